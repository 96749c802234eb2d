#!/usr/bin/env bash
# What a persistent subscriber costs QoS 1 publishers (decision 0012):
# `glassbox bench mqtt` against `glassbox serve` with no persistent
# subscriber, one offline (its queue is written before each PUBACK) and one
# online, for each binary given, alternating, RUNS times.
# Usage: scripts/bench-mqtt-persistent.sh RUNS BIN [BIN…]   (needs mosquitto_sub)
# Each run prints: run, scenario, binary, then the rate of 4 publishers
# (--inflight 20) and the PUBACK round trip of 1 publisher (--inflight 1).
# Ends with the medians per scenario and binary.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=$1
shift
TOKEN=gbx_bench_token_0123456789
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT

# One scenario on one binary: prints "RATE ROUND_TRIP_US".
measure() {
  local bin=$1 scenario=$2 data
  data=$(mktemp -d -p "$DIR")
  GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=error GLASSBOX_MQTT_PUBLISH_RATE_MAX=0 \
    "$bin" serve --data-dir "$data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$data/log" 2>&1 &
  local pid=$! sub=""
  for _ in $(seq 100); do grep -q "glassbox ready" "$data/log" && break; sleep 0.1; done
  local port
  port=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$data/log")
  local auth=(-p "$port" -u operator -P "$TOKEN" -c -i archive -q 1 -t 'bench/#')
  case $scenario in
    offline) mosquitto_sub "${auth[@]}" -E ;;
    online) mosquitto_sub "${auth[@]}" > /dev/null & sub=$!; sleep 0.5 ;;
  esac
  local bench=("$bin" bench mqtt --port "$port" --username operator --password "$TOKEN" --qos 1 --subscribers 0)
  local rate round_trip
  rate=$("${bench[@]}" --publishers 4 --messages 20000 --inflight 20 | sed -n 's/^sent=.*(\([0-9]*\)\/s).*/\1/p')
  round_trip=$("${bench[@]}" --publishers 1 --messages 3000 --inflight 1 \
    | sed -n 's/^sent=\([0-9]*\) in \([0-9.]*\) s.*/\2 \1/p' | awk '{ printf "%.0f", $1 / $2 * 1e6 }')
  [ -n "$sub" ] && kill "$sub"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$rate $round_trip"
}

for run in $(seq "$RUNS"); do
  for scenario in none offline online; do
    for bin in "$@"; do
      echo "$run $scenario $bin $(measure "$bin" "$scenario")" | tee -a "$DIR/results"
    done
  done
done
# The middle value of column $1 of stdin.
median() { awk -v c="$1" '{ print $c }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "medians (rate/s, PUBACK round trip µs):"
for scenario in none offline online; do
  for bin in "$@"; do
    runs=$(awk -v s="$scenario" -v b="$bin" '$2 == s && $3 == b' "$DIR/results")
    echo "$scenario $bin rate=$(median 4 <<< "$runs") round_trip_us=$(median 5 <<< "$runs")"
  done
done
