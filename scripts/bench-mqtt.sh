#!/usr/bin/env bash
# Glassbox's gateway and Mosquitto side by side, same load generator, same
# machine: `glassbox bench mqtt` against each, alternating, RUNS times.
# Usage: scripts/bench-mqtt.sh [RUNS]   (needs a release build and mosquitto)
# BIN=path/to/glassbox picks the build (default target/release/glassbox).
# BASE_BIN=path/to/an/older/glassbox adds that build as a third broker in the
# same alternation, to measure what a change costs ("glassbox-base" lines).
# Prints each run's figures line, with the CPU seconds the broker and the
# load generator each used (and per delivered message: on 2 shared cores,
# 2 / (broker + generator µs per message) bounds any broker's rate);
# BENCHMARKS.md quotes the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BIN=${BIN:-target/release/glassbox}
TOKEN=gbx_bench_token_0123456789
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT

cat > "$DIR/mosquitto.conf" <<CONF
listener 1884 127.0.0.1
allow_anonymous true
max_queued_messages 0
CONF
mosquitto -c "$DIR/mosquitto.conf" >/dev/null 2>&1 &
MOSQUITTO=$!

# The same unbounded-enough subscriber queue as Mosquitto's; durable PUBACKs.
# Starts `glassbox serve` from binary $1 with data in $DIR/$2; sets PID and PORT.
serve() {
  GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 \
  GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 \
    "$1" serve --data-dir "$DIR/$2" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$DIR/$2.log" &
  PID=$!
  for _ in $(seq 100); do grep -q "glassbox ready" "$DIR/$2.log" && break; sleep 0.1; done
  PORT=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$DIR/$2.log")
  [ -n "$PORT" ] || { echo "glassbox ($1) did not start:"; cat "$DIR/$2.log"; exit 1; }
}
serve "$BIN" data
GLASSBOX=$PID GLASSBOX_PORT=$PORT
if [ -n "${BASE_BIN:-}" ]; then
  serve "$BASE_BIN" base
  BASE=$PID BASE_PORT=$PORT
fi
sleep 0.5

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# Runs the generator against PORT for broker PID; prints its figures line
# with the CPU each side used.
measure() {
  local pid=$1 before gen line
  shift
  before=$(cpu_of "$pid")
  TIMEFORMAT='%U %S'
  { time "$BIN" bench mqtt "$@" > "$DIR/run.log"; } 2> "$DIR/time.log"
  line=$(tail -1 "$DIR/run.log")
  gen=$(awk '{ print $1 + $2 }' "$DIR/time.log")
  awk -v l="$line" -v b="$(cpu_of "$pid")" -v a="$before" -v g="$gen" -v n="$((4 * 50000))" 'BEGIN {
    printf "%s broker_cpu_s=%.2f generator_cpu_s=%.2f broker_us_per_msg=%.1f generator_us_per_msg=%.1f\n",
      l, b - a, g, (b - a) * 1e6 / n, g * 1e6 / n }'
}

shape=(--publishers 4 --subscribers 1 --messages 50000 --size 64)
for qos in 1 0; do
  for run in $(seq "$RUNS"); do
    echo "mosquitto qos=$qos run=$run $(measure "$MOSQUITTO" --port 1884 --qos "$qos" "${shape[@]}")"
    echo "glassbox  qos=$qos run=$run $(measure "$GLASSBOX" --port "$GLASSBOX_PORT" --qos "$qos" "${shape[@]}" \
      --username operator --password "$TOKEN")"
    if [ -n "${BASE_BIN:-}" ]; then
      echo "glassbox-base qos=$qos run=$run $(measure "$BASE" --port "$BASE_PORT" --qos "$qos" "${shape[@]}" \
        --username operator --password "$TOKEN")"
    fi
  done
done
