#!/usr/bin/env bash
# Where Glassbox's threads wait during a paced run (`glassbox bench mqtt
# --rate`, 4 publishers -> 1 subscriber, 64 bytes): every context switch
# on the machine is recorded (`perf record -e sched:sched_switch -g -a`),
# then scripts/offcpu.py sums each thread's time off the CPU by the kernel
# stack it waited on (the disk, a futex, preemption).
# Usage: scripts/bench-offcpu.sh [RATE] [QOS] [THREAD...]
#   (default 50000 msg/s, QoS 1, recorder-writer and recorder-checkpointer)
# BIN=path/to/glassbox picks the build (default target/release/glassbox).
# Needs perf (linux-perf) and root or perf_event_paranoid <= -1.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-50000} QOS=${2:-1}
shift $(($# < 2 ? $# : 2))
# Thread names as the kernel keeps them: 15 characters at most.
if [ $# -gt 0 ]; then THREADS=("$@"); else THREADS=(recorder-writer recorder-checkp); fi
BIN=${BIN:-target/release/glassbox}
DIR=$(mktemp -d)
TOKEN=gbx_bench_token_0123456789
PID=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$DIR"' EXIT
GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 \
  GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 GLASSBOX_MQTT_PUBLISH_RATE_MAX=0 \
  "$BIN" serve --data-dir "$DIR/data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$DIR/log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "glassbox ready" "$DIR/log" && break; sleep 0.1; done
MQTT=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$DIR/log")
[ -n "$MQTT" ] || { echo "glassbox did not start:"; cat "$DIR/log"; exit 1; }
perf record -e sched:sched_switch -g -a -o "$DIR/perf.data" > /dev/null 2>&1 &
PERF=$!
sleep 0.5
PER_PUB=$((RATE / 4))
"$BIN" bench mqtt --port "$MQTT" --publishers 4 --subscribers 1 --qos "$QOS" --size 64 --rate "$PER_PUB" \
  --messages $((PER_PUB * 5)) --inflight 64 --username operator --password "$TOKEN" | tail -1
kill -INT "$PERF"
wait "$PERF" 2>/dev/null || true
for thread in "${THREADS[@]}"; do
  scripts/offcpu.py "$DIR/perf.data" "$thread"
done
