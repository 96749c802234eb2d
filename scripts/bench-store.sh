#!/usr/bin/env bash
# `glassbox bench store` on a fresh store, for this build and (with BASE_BIN)
# an older one, alternating, RUNS times each, so both see the same noise.
# Usage: scripts/bench-store.sh [RUNS]   (needs a release build)
# Each run prefills PREFILL events (for the lookups to find chains), then
# appends EVENTS with the shape measured.
# BASE_BIN=path/to/an/older/glassbox adds that build ("glassbox-base" lines),
# to measure what a change costs. Prints one line per run: acknowledged and
# indexed events/s, the CPU seconds the process used (user + system) and
# that per event written, and the chain lookup latencies; BENCHMARKS.md
# quotes the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BIN=${BIN:-target/release/glassbox}
EVENTS=${EVENTS:-500000}
PREFILL=${PREFILL:-100000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

# Runs one build once on an empty store; prints its figures line.
measure() {
  local bin=$1
  shift
  rm -rf "$DIR/data"
  TIMEFORMAT='%U %S'
  { time "$bin" bench store --size "$PREFILL" --events "$EVENTS" --data-dir "$DIR/data" "$@" > "$DIR/run.log"; } 2> "$DIR/time.log"
  # CPU per event counts every event the process wrote, prefill included.
  awk -v n="$((PREFILL + EVENTS))" -v cpu="$(tail -1 "$DIR/time.log" | awk '{ print $1 + $2 }')" '
    /^append:/ { acked = $9; indexed = $16 }
    /^chain lookup/ { sub(/^[^:]*: /, ""); chain = $0 }
    END { printf "acked_per_s=%s indexed_per_s=%s cpu_s=%.2f cpu_us_per_event=%.2f chain=[%s]\n",
      acked, indexed, cpu, cpu * 1e6 / n, chain }' "$DIR/run.log"
}

for shape in "--producers 64 --batch 64" "--producers 1024 --batch 1"; do
  for run in $(seq "$RUNS"); do
    # shellcheck disable=SC2086 # the shape is two flags
    echo "glassbox      $shape run=$run $(measure "$BIN" $shape)"
    if [ -n "${BASE_BIN:-}" ]; then
      # shellcheck disable=SC2086
      echo "glassbox-base $shape run=$run $(measure "$BASE_BIN" $shape)"
    fi
  done
done
