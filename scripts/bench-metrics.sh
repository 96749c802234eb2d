#!/usr/bin/env bash
# What deriving metrics (and feeding the anomaly detectors) costs the
# gateway: the same build, the same load (`glassbox bench mqtt`, QoS 1,
# 4 publishers -> 1 subscriber, 64-byte payloads), with [metrics] derive on
# and off, alternating, RUNS times each. Recording is on in both (it is the
# durability contract). Besides the load generator's delivered rate, each
# line gives the server's own CPU time per delivered message (user + system,
# from /proc), which a busy machine disturbs far less than the rate.
# BENCHMARKS.md quotes the medians and their ratios.
# Usage: scripts/bench-metrics.sh [RUNS]   (needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BIN=${GLASSBOX_BIN:-target/release/glassbox}
TOKEN=gbx_bench_token_0123456789
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT

run_one() { # $1 = derive (true|false), $2 = run number
  local data="$DIR/data-$1-$2" log="$DIR/serve-$1-$2.log"
  GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn GLASSBOX_METRICS_DERIVE=$1 \
  GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 \
    "$BIN" serve --data-dir "$data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do grep -q "glassbox ready" "$log" && break; sleep 0.1; done
  local port
  port=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$log")
  [ -n "$port" ] || { echo "glassbox did not start:"; cat "$log"; exit 1; }
  sleep 0.5
  local ticks before after figures
  ticks=$(getconf CLK_TCK)
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  figures=$("$BIN" bench mqtt --port "$port" --qos 1 --publishers 4 --subscribers 1 --messages 50000 --size 64 \
    --username operator --password "$TOKEN" | tail -1)
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  # 50,000 messages per publisher x 4 publishers.
  echo "derive=$1 run=$2 $figures server_cpu_us_per_msg=$(awk -v t="$((after - before))" -v hz="$ticks" 'BEGIN { printf "%.2f", t * 1e6 / hz / 200000 }')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}

for run in $(seq "$RUNS"); do
  run_one true "$run"
  run_one false "$run"
done
