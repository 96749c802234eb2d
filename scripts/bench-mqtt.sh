#!/usr/bin/env bash
# Glassbox's gateway and Mosquitto side by side, same load generator, same
# machine: `glassbox bench mqtt` against each, alternating, RUNS times.
# Usage: scripts/bench-mqtt.sh [RUNS]   (needs a release build and mosquitto)
# Prints each run's figures line; BENCHMARKS.md quotes the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BIN=target/release/glassbox
TOKEN=gbx_bench_token_0123456789
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT

cat > "$DIR/mosquitto.conf" <<CONF
listener 1884 127.0.0.1
allow_anonymous true
max_queued_messages 0
CONF
mosquitto -c "$DIR/mosquitto.conf" >/dev/null 2>&1 &

# The same unbounded-enough subscriber queue as Mosquitto's; durable PUBACKs.
GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 \
GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 \
  "$BIN" serve --data-dir "$DIR/data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$DIR/serve.log" &
for _ in $(seq 100); do grep -q "glassbox ready" "$DIR/serve.log" && break; sleep 0.1; done
PORT=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$DIR/serve.log")
[ -n "$PORT" ] || { echo "glassbox did not start:"; cat "$DIR/serve.log"; exit 1; }
sleep 0.5

shape=(--publishers 4 --subscribers 1 --messages 50000 --size 64)
for qos in 1 0; do
  for run in $(seq "$RUNS"); do
    m=$("$BIN" bench mqtt --port 1884 --qos "$qos" "${shape[@]}" | tail -1)
    echo "mosquitto qos=$qos run=$run $m"
    g=$("$BIN" bench mqtt --port "$PORT" --qos "$qos" "${shape[@]}" --username operator --password "$TOKEN" | tail -1)
    echo "glassbox  qos=$qos run=$run $g"
  done
done
