#!/usr/bin/env bash
# Broker CPU per delivered message, Glassbox, Mosquitto and NATS (its MQTT
# listener on JetStream, when `nats-server` is installed) side by side with
# the same dependency-free generator (../shared/mqttload, one OS thread per
# client, so the generator's own cost does not depend on the broker), runs
# alternating between the brokers so both see the same machine load.
# Usage: scripts/bench-mqttload.sh [RUNS] [QOS...]     (default: 3 runs, QoS 1 and 0)
# BIN=path/to/glassbox picks the build (default target/release/glassbox);
# BASE_BIN=path/to/an/older/glassbox adds it to the alternation as
# "glassbox-base", to measure a change before/after in the same run.
# BIN_ENV / BASE_ENV: extra VAR=value settings for either server (e.g.
# BASE_ENV=GLASSBOX_RECORDER_BUS_CAPACITY=4096 to compare a setting).
# MSGS (per publisher, default 50000), PUBS (4), SIZE (64) shape the load.
# After the flat-out runs, a paced run per QoS level and broker: PACED
# messages/s in all (default 50000, 0 skips it) for PACED_SECONDS (5), sent
# by `glassbox bench mqtt --rate`, for latency at a rate every broker keeps
# up with (or shows it does not).
# Each line: the generator's figures, then the broker's CPU seconds
# (utime+stime from /proc/PID/stat, before and after the run) per delivered
# message, and the 1-minute load average when the run started (the machine
# is shared: quote medians and say how loaded it was).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
shift || true
QOS_LEVELS=("${@:-1 0}")
# shellcheck disable=SC2206
QOS_LEVELS=(${QOS_LEVELS[*]})
BIN=${BIN:-target/release/glassbox}
MSGS=${MSGS:-50000} PUBS=${PUBS:-4} SIZE=${SIZE:-64}
LOAD=target/mqttload/release/mqttload
TOKEN=gbx_bench_token_0123456789
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR" || true' EXIT

[ -x "$LOAD" ] || cargo build --release --manifest-path "${MQTTLOAD_SRC:-../shared/mqttload}/Cargo.toml" \
  --target-dir target/mqttload

cat > "$DIR/mosquitto.conf" <<CONF
listener 1884 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 0
CONF
mosquitto -c "$DIR/mosquitto.conf" >/dev/null 2>&1 &
MOSQUITTO=$!

NATS=
if command -v nats-server >/dev/null; then
  cat > "$DIR/nats.conf" <<CONF
listen: 127.0.0.1:4223
server_name: bench
jetstream { store_dir: "$DIR/nats" }
mqtt { listen: 127.0.0.1:1885 }
CONF
  nats-server -c "$DIR/nats.conf" >/dev/null 2>&1 &
  NATS=$!
fi

# `glassbox serve` from binary $1 with data in $DIR/$2, durable PUBACKs, the
# subscriber queue as unbounded as Mosquitto's and no per-device rate limit;
# sets PID and PORT.
serve() {
  GLASSBOX_ADMIN_TOKEN=$TOKEN GLASSBOX_LOG=warn GLASSBOX_MQTT_QUEUE_MESSAGES_MAX=10000000 \
  GLASSBOX_MQTT_QUEUE_BYTES_MAX=4294967296 GLASSBOX_MQTT_PUBLISH_RATE_MAX=0 \
    env $3 "$1" serve --data-dir "$DIR/$2" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 > "$DIR/$2.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "glassbox ready" "$DIR/$2.log" && break; sleep 0.1; done
  PORT=$(sed -n 's/.* mqtt=127.0.0.1:\([0-9]*\) .*/\1/p' "$DIR/$2.log")
  [ -n "$PORT" ] || { echo "glassbox ($1) did not start:"; cat "$DIR/$2.log"; exit 1; }
}
serve "$BIN" data "${BIN_ENV:-}"
GLASSBOX=$PID GLASSBOX_PORT=$PORT
if [ -n "${BASE_BIN:-}" ]; then
  serve "$BASE_BIN" base "${BASE_ENV:-}"
  BASE=$PID BASE_PORT=$PORT
fi
# One line per client (publishers, then the subscriber): the operator's login.
for n in $(seq $((PUBS + 1))); do echo "bench-$n,operator,$TOKEN"; done > "$DIR/creds.ids"
sleep 0.5

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# Runs the generator against port $2 for broker PID $1; prints its figures
# with the broker's CPU per delivered message.
measure() {
  local pid=$1 port=$2 qos=$3 before load line received
  shift 3
  load=$(cut -d' ' -f1 /proc/loadavg)
  before=$(cpu_of "$pid")
  line=$("$LOAD" --port "$port" --pubs "$PUBS" --subs 1 --msgs "$MSGS" --qos "$qos" --size "$SIZE" "$@" | tail -1)
  received=$(sed -n 's/.* received=\([0-9]*\)\/.*/\1/p' <<< "$line")
  awk -v l="$line" -v b="$(cpu_of "$pid")" -v a="$before" -v n="${received:-0}" -v load="$load" 'BEGIN {
    printf "%s broker_cpu_s=%.2f broker_us_per_msg=%.2f load1=%s\n", l, b - a, n ? (b - a) * 1e6 / n : 0, load }'
}

# A paced run through `glassbox bench mqtt --rate` (which prints the
# figures, not the received count: delivered = sent - lost).
PACED=${PACED:-50000} PACED_SECONDS=${PACED_SECONDS:-5}
GLASSBOX_CLI=${GLASSBOX_CLI:-$BIN}
paced() {
  local pid=$1 port=$2 qos=$3 before load line lost per=$((PACED / PUBS)) n
  shift 3
  n=$((per * PACED_SECONDS))
  load=$(cut -d' ' -f1 /proc/loadavg)
  before=$(cpu_of "$pid")
  line=$("$GLASSBOX_CLI" bench mqtt --port "$port" --publishers "$PUBS" --subscribers 1 --qos "$qos" --size "$SIZE" \
    --rate "$per" --messages "$n" --inflight 64 "$@" | tail -1)
  lost=$(sed -n 's/.*lost=\([0-9]*\).*/\1/p' <<< "$line")
  awk -v l="$line" -v b="$(cpu_of "$pid")" -v a="$before" -v n="$((n * PUBS - ${lost:-0}))" -v load="$load" 'BEGIN {
    printf "%s broker_cpu_s=%.2f broker_us_per_msg=%.2f load1=%s\n", l, b - a, n ? (b - a) * 1e6 / n : 0, load }'
}

for qos in "${QOS_LEVELS[@]}"; do
  for run in $(seq "$RUNS"); do
    echo "mosquitto     qos=$qos run=$run $(measure "$MOSQUITTO" 1884 "$qos")"
    if [ -n "$NATS" ] && [ "$qos" != 2 ]; then
      echo "nats          qos=$qos run=$run $(measure "$NATS" 1885 "$qos")"
    fi
    echo "glassbox      qos=$qos run=$run $(measure "$GLASSBOX" "$GLASSBOX_PORT" "$qos" --creds "$DIR/creds.ids")"
    if [ -n "${BASE_BIN:-}" ]; then
      echo "glassbox-base qos=$qos run=$run $(measure "$BASE" "$BASE_PORT" "$qos" --creds "$DIR/creds.ids")"
    fi
  done
done

[ "$PACED" -gt 0 ] || exit 0
for qos in "${QOS_LEVELS[@]}"; do
  for run in $(seq "$RUNS"); do
    echo "paced $PACED/s mosquitto     qos=$qos run=$run $(paced "$MOSQUITTO" 1884 "$qos")"
    if [ -n "$NATS" ] && [ "$qos" != 2 ]; then
      echo "paced $PACED/s nats          qos=$qos run=$run $(paced "$NATS" 1885 "$qos")"
    fi
    echo "paced $PACED/s glassbox      qos=$qos run=$run $(paced "$GLASSBOX" "$GLASSBOX_PORT" "$qos" \
      --username operator --password "$TOKEN")"
    if [ -n "${BASE_BIN:-}" ]; then
      echo "paced $PACED/s glassbox-base qos=$qos run=$run $(paced "$BASE" "$BASE_PORT" "$qos" \
        --username operator --password "$TOKEN")"
    fi
  done
done
