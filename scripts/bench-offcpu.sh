#!/usr/bin/env bash
# Where Glassbox's threads wait during a paced run (`glassbox bench mqtt
# --rate`, 4 publishers -> 1 subscriber, 64 bytes): every context switch
# on the machine is recorded (`perf record -e sched:sched_switch -g -a`),
# then scripts/offcpu.py sums each thread's time off the CPU by the kernel
# stack it waited on (the disk, a futex, preemption).
# Usage: scripts/bench-offcpu.sh [RATE] [QOS] [THREAD...]
#   (default 50000 msg/s for PACED_SECONDS (5), QoS 1, recorder-writer and
#   recorder-checkpointer)
# BIN=path/to/glassbox picks the build (default target/release/glassbox).
# Needs perf (Debian's linux-perf) and the right to trace the whole
# machine: run it as root (`sudo --preserve-env=BIN`), or with
# kernel.perf_event_paranoid = -1.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-50000} QOS=${2:-1}
shift $(($# < 2 ? $# : 2))
# Thread names as the kernel keeps them: 15 characters at most.
if [ $# -gt 0 ]; then THREADS=("$@"); else THREADS=(recorder-writer recorder-checkp); fi
BIN=${BIN:-target/release/glassbox}
# shellcheck source=scripts/bench-serve.sh
. scripts/bench-serve.sh
perf record -e sched:sched_switch -g -a -o "$DIR/perf.data" > "$DIR/perf.log" 2>&1 &
PERF=$!
STOP_TOO=$PERF
sleep 0.5
kill -0 "$PERF" 2>/dev/null || { echo "perf could not record:"; cat "$DIR/perf.log"; exit 1; }
PER_PUB=$((RATE / 4))
"$BIN" bench mqtt --port "$MQTT" --publishers 4 --subscribers 1 --qos "$QOS" --size 64 --rate "$PER_PUB" \
  --messages $((PER_PUB * ${PACED_SECONDS:-5})) --inflight 64 --username operator --password "$TOKEN" | tail -1
kill -INT "$PERF"
wait "$PERF" 2>/dev/null || true
STOP_TOO=
for thread in "${THREADS[@]}"; do
  scripts/offcpu.py "$DIR/perf.data" "$thread"
done
