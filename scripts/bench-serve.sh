# Sourced by the paced bench scripts: starts `$BIN serve` in a fresh
# temporary data directory ($DIR/data) as the benchmarks run it (durable
# PUBACKs, subscriber queues as unbounded as Mosquitto's, no per-device
# rate limit), and sets PID, MQTT and HTTP (ports), TOKEN (the operator's)
# and DIR. The EXIT trap stops it, and any process the caller puts in
# STOP_TOO (perf, say), and removes DIR.
DIR=$(mktemp -d)
TOKEN=gbx_bench_token_0123456789
PID=
STOP_TOO=
trap 'for p in $PID $STOP_TOO; do kill -INT "$p" 2>/dev/null || true; done; rm -rf "$DIR"' EXIT
GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 \
  GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 GLASSBOX_MQTT_PUBLISH_RATE_MAX=0 \
  "$BIN" serve --data-dir "$DIR/data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$DIR/log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "glassbox ready" "$DIR/log" && break; sleep 0.1; done
MQTT=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$DIR/log")
HTTP=$(sed -n 's/.* http=http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$DIR/log")
[ -n "$MQTT" ] && [ -n "$HTTP" ] || { echo "glassbox did not start:"; cat "$DIR/log"; exit 1; }
