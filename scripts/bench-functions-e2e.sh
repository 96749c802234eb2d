#!/usr/bin/env bash
# Functions end to end: MQTT publishes -> recorded device.message -> trigger
# -> invocation -> function.invoked recorded. Starts a release `glassbox
# serve` with a fresh data directory, deploys COMPONENT on mqtt:bench/#,
# drives it with `glassbox bench mqtt` (QoS 1, 4 publishers x MESSAGES,
# --inflight 100, no subscribers: the function is the only consumer) and
# polls /metrics until every message has its invocation recorded (or none
# came for 10 s). Prints one line per run:
#   invocations_per_sec=… invocations=… dead_letters=… seconds=…
#   dispatch_to_recorded_p50_us=… p90_us=… p99_us=…
#   of which p50: queued_us=… wall_us=…
# (from the first publish to the last invocation recorded; dead letters
# would be invocations refused by the function's bounded queue; the
# percentiles are the server's own histogram of each invocation from
# entering the function's queue to its record committed, interpolated
# within buckets).
# Usage: scripts/bench-functions-e2e.sh [COMPONENT] [RUNS] [MESSAGES]
#   RATE=N (env) paces each publisher to N msg/s instead of flat out: the
#   latency of a lightly loaded server rather than a saturated one.
#   COMPONENT defaults to the trivial fixture; for examples/js-telemetry
#   the payloads are JSON telemetry (`bench mqtt --json`, 21.5 °C: the
#   function parses, logs and prints, and emits nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
COMPONENT=${1:-crates/runtime/tests/fixtures/ok.wat}
RUNS=${2:-3}
MESSAGES=${3:-25000}
BIN=${GLASSBOX_BIN:-target/release/glassbox}
TOKEN=gbx_bench_token_0123456789
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
JSON=()
case "$COMPONENT" in *.wasm) JSON=(--json --size 80) ;; esac

# Sum of a counter's series on /metrics.
counter() { curl -s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$2/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { print s + 0 }'; }

# p50, p90 and p99 (µs) of a Prometheus histogram, linear within a bucket.
quantiles() {
  curl -s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$2/metrics" | awk -v m="$1_bucket" '
    index($1, m"{le=\"") == 1 && $1 !~ /Inf/ { split($1, p, "\""); n++; le[n] = p[2] * 1e6; c[n] = $2 }
    function q(f,   i, want, lo, below) {
      want = f * c[n]
      for (i = 1; i <= n; i++) if (c[i] >= want) break
      lo = i > 1 ? le[i - 1] : 0; below = i > 1 ? c[i - 1] : 0
      return lo + (le[i] - lo) * (want - below) / (c[i] - below)
    }
    END { printf "dispatch_to_recorded_p50_us=%.0f p90_us=%.0f p99_us=%.0f\n", q(0.5), q(0.9), q(0.99) }'
}

run_one() {
  local data="$DIR/data-$1" log="$DIR/serve-$1.log"
  GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn \
  GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 \
    "$BIN" serve --data-dir "$data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do grep -q "glassbox ready" "$log" && break; sleep 0.1; done
  local mqtt http
  mqtt=$(sed -n "s/.* mqtt=127.0.0.1:\([0-9]*\).*/\1/p" "$log")
  http=$(sed -n "s/.* http=http:\/\/127.0.0.1:\([0-9]*\).*/\1/p" "$log")
  [ -n "$mqtt" ] && [ -n "$http" ] || { echo "glassbox did not start:"; cat "$log"; exit 1; }
  GLASSBOX_SERVER=http://127.0.0.1:$http GLASSBOX_TOKEN=$TOKEN "$BIN" functions deploy "$COMPONENT" \
    --name bench --trigger 'mqtt:bench/#' --retries 0 --concurrency ${CONCURRENCY:-8} > /dev/null
  local expected=$((4 * MESSAGES)) start now done=0 last=0 idle=0
  start=$(date +%s.%N)
  "$BIN" bench mqtt --port "$mqtt" --qos 1 --publishers 4 --subscribers 0 --messages "$MESSAGES" \
    --inflight 100 --rate "${RATE:-0}" --username operator --password "$TOKEN" "${JSON[@]}" > "$DIR/load-$1.log" &
  local load=$!
  while [ "$done" -lt "$expected" ] && [ "$idle" -lt 100 ]; do
    sleep 0.1
    done=$(counter glassbox_function_invocations_total "$http")
    if [ "$done" -gt "$last" ]; then now=$(date +%s.%N); last=$done; idle=0; else idle=$((idle + 1)); fi
  done
  wait "$load"
  local dead
  dead=$(counter glassbox_function_dead_letters_total "$http")
  awk -v n="$last" -v d="$dead" -v s="$start" -v e="${now:-$start}" \
    'BEGIN { t = e - s; printf "invocations_per_sec=%.0f invocations=%d dead_letters=%d seconds=%.2f\n", n / t, n, d, t }'
  quantiles glassbox_function_dispatch_to_recorded_seconds "$http"
  # Where that time goes, from the newest 1,000 invocation records: waiting
  # to run (queue entry to start on a thread), running, and the rest
  # (recording the outcome: the hand-off to the recorder and its commit).
  GLASSBOX_SERVER=http://127.0.0.1:$http GLASSBOX_TOKEN=$TOKEN "$BIN" functions invocations bench --limit 1000 --json |
    python3 -c '
import json, sys
rows = json.load(sys.stdin)
def p50(key):
    v = sorted(r.get(key, 0) for r in rows)
    return v[len(v) // 2] if v else 0
print("of which p50: queued_us=%d wall_us=%d (newest %d invocations)" % (p50("queued_us"), p50("wall_us"), len(rows)))'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}

for run in $(seq "$RUNS"); do run_one "$run"; done
