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
# shellcheck source=scripts/bench-serve.sh
. scripts/bench-serve.sh
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
