#!/usr/bin/env bash
# Interop test of Glassbox's MQTT gateway with third-party clients:
# mosquitto_pub / mosquitto_sub (Debian: mosquitto-clients) and Python paho-mqtt 2.x
# (pip install paho-mqtt; the paho part is scripts/interop_paho.py).
#
#   scripts/interop.sh [PATH_TO_GLASSBOX_BINARY]     (default: target/debug/glassbox)
#
# It starts `glassbox serve` on free loopback ports with a fresh data dir in a
# temp dir, registers devices, and checks, with MQTT 3.1.1 and 5.0 clients:
# device publishes recorded, operator subscriptions and their `delivered` states,
# QoS 2, retained messages, persistent-session offline queues, last will,
# refused connections (wrong secret, unknown and disabled devices), ACLs, and
# (paho) commands to a device, correlationid/traceparent user properties and
# clean disconnects; and the device control plane, the operator's side with the
# glassbox CLI and a paho device (scripts/interop_control.py): shadow deltas
# for a device that was offline, durable commands (queued, delivered, answered,
# expired, a late answer refused, `control send --wait` of a failing command).
# One `ok - ...` / `not ok - ...` line per check; exits 1 if any check failed.
# Set INTEROP_KEEP=1 to keep the temp dir (server logs) afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/glassbox}"
[[ "$BIN" == */* ]] || BIN="./$BIN"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
TOKEN="interop-admin-token-4f1c9a7e2b8d5036"
WAIT="${INTEROP_WAIT:-10}" # seconds: the limit of every wait below

for tool in mosquitto_pub mosquitto_sub python3 stdbuf; do
    command -v "$tool" >/dev/null || { echo "not ok - $tool is not installed (mosquitto-clients / python3)"; exit 1; }
done
[[ -x "$BIN" ]] || { echo "not ok - no glassbox binary at $BIN (cargo build -p glassbox)"; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/glassbox-interop.XXXXXX")"
SERVER_PID=""
BG_PIDS=()
declare -A SUB_PID # sub_start NAME -> its pid

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}" $SERVER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}" $SERVER_PID; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${INTEROP_KEEP:-0}" == 1 ]]; then
        echo "# kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the server -------------------------------------------------------------

# Port 0: the server binds free ports itself and names them in its ready line
# ("glassbox ready: http=http://127.0.0.1:PORT mqtt=127.0.0.1:PORT ..."), so no
# other process can take them between picking and binding.
# Refused CONNECTs are recorded per peer and interval; a short interval keeps the checks quick.
GLASSBOX_ADMIN_TOKEN="$TOKEN" GLASSBOX_MQTT_REFUSALS_INTERVAL=1s "$BIN" serve --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --data-dir "$TMP/data" \
    >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
deadline=$((SECONDS + 30))
until READY="$(grep -m1 '^glassbox ready:' "$TMP/server.out")"; do
    if ((SECONDS >= deadline)) || ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "not ok - glassbox serve did not print 'glassbox ready:' within 30s"
        sed 's/^/#   /' "$TMP/server.out" "$TMP/server.err" | tail -30
        exit 1
    fi
    sleep 0.1
done
echo "# $READY"
HTTP_URL="$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$READY")"
MQTT_PORT="$(sed -n 's/.* mqtt=[^ ]*:\([0-9]*\).*/\1/p' <<<"$READY")"
[[ -n "$HTTP_URL" && -n "$MQTT_PORT" ]] || { echo "not ok - cannot read the addresses in: $READY"; exit 1; }

export GLASSBOX_SERVER="$HTTP_URL" GLASSBOX_TOKEN="$TOKEN"
H=(-h 127.0.0.1 -p "$MQTT_PORT")
OP=(-u operator -P "$TOKEN")

# --- helpers ----------------------------------------------------------------

PASSED=0
FAILED=0
# check DESCRIPTION FUNCTION [ARGS...]: runs one check and prints its line.
# Checks run with `set -e` off (they are called in an `if`): each tests what it
# needs and returns 1, after `why ...`, on failure.
check() {
    local desc="$1"
    shift
    : >"$TMP/why"
    if "$@"; then
        echo "ok - $desc"
        PASSED=$((PASSED + 1))
    else
        echo "not ok - $desc"
        sed 's/^/#   /' "$TMP/why"
        FAILED=$((FAILED + 1))
    fi
}

why() { echo "$*" >>"$TMP/why"; }

# create_device ID VAR: registers device ID and puts its secret in $VAR; exits on failure.
create_device() {
    local out secret
    if ! out="$("$BIN" devices create "$1" --json 2>&1)" ||
        ! secret="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])' <<<"$out")"; then
        echo "not ok - glassbox devices create $1 --json: $out"
        exit 1
    fi
    printf -v "$2" '%s' "$secret"
}

# events_until CONDITION QUERY-ARGS...: polls `glassbox events query QUERY-ARGS --json`
# until the Python expression CONDITION holds. In it, `events` is the list of
# events and `states(e, state, target=None)` the matching states of event e.
# The last answer is left in $TMP/events.json.
events_until() {
    local cond="$1"
    shift
    local deadline=$((SECONDS + WAIT))
    while :; do
        if "$BIN" events query "$@" --json >"$TMP/events.json" 2>"$TMP/events.err" &&
            python3 -c '
import json, sys
doc = json.load(open(sys.argv[2]))
events = doc["events"] if isinstance(doc, dict) else doc
def states(e, state, target=None):
    return [s for s in e.get("states", []) if s.get("state") == state and (target is None or s.get("target") == target)]
sys.exit(0 if eval(sys.argv[1]) else 1)
' "$cond" "$TMP/events.json"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            why "no recorded event matched within ${WAIT}s: $cond"
            why "query: events query $* ->" "$(head -c 1500 "$TMP/events.json" | tr -s ' \n' ' ')" \
                "$(cat "$TMP/events.err")"
            return 1
        fi
        sleep 0.2
    done
}

# sub_start NAME MOSQUITTO_SUB-ARGS...: runs mosquitto_sub in the background
# (its output in $TMP/NAME.out, received messages as lines "MSG topic payload",
# or as SUB_FMT says), and waits for its SUBACK. It gives up after SUB_W seconds.
sub_start() {
    local name="$1"
    shift
    stdbuf -oL mosquitto_sub "${H[@]}" -d -F "${SUB_FMT:-MSG %t %p}" -W "${SUB_W:-$WAIT}" "$@" >"$TMP/$name.out" 2>&1 &
    local pid=$!
    BG_PIDS+=("$pid")
    SUB_PID[$name]=$pid
    local deadline=$((SECONDS + WAIT))
    until grep -q 'received SUBACK' "$TMP/$name.out"; do
        if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
            why "mosquitto_sub $name never got a SUBACK: $(cat "$TMP/$name.out")"
            return 1
        fi
        sleep 0.05
    done
}

# sub_wait NAME: waits for the background mosquitto_sub NAME to exit (its -C count
# reached, or its -W timeout) and succeeds if it exited 0.
sub_wait() {
    if ! wait "${SUB_PID[$1]}"; then
        why "mosquitto_sub $1 failed or timed out: $(cat "$TMP/$1.out")"
        return 1
    fi
}

# received NAME: the messages the mosquitto_sub NAME received, one "topic payload" a line.
received() { sed -n 's/^MSG //p' "$TMP/$1.out"; }

expect_received() {
    local got
    got="$(received "$1")"
    if [[ "$got" != "$2" ]]; then
        why "mosquitto_sub $1 received [$got], expected [$2]"
        why "its output: $(cat "$TMP/$1.out")"
        return 1
    fi
}

# pub DEVICE SECRET MOSQUITTO_PUB-ARGS...: a device publishes (client id = user = DEVICE).
pub() {
    local dev="$1" secret="$2"
    shift 2
    if ! mosquitto_pub "${H[@]}" -i "$dev" -u "$dev" -P "$secret" "$@" >"$TMP/pub.out" 2>"$TMP/pub.err"; then
        why "mosquitto_pub -i $dev $* failed: $(cat "$TMP/pub.out" "$TMP/pub.err")"
        return 1
    fi
}

# tally OUT RC SCRIPT: prints the `ok` / `not ok` / `#` lines of a Python part's
# output OUT and counts them; its exit status RC non-zero without a `not ok`
# line counts as one failure.
tally() {
    grep '^ok - \|^not ok - \|^#' "$1" || true
    PASSED=$((PASSED + $(grep -c '^ok - ' "$1" || true)))
    FAILED=$((FAILED + $(grep -c '^not ok - ' "$1" || true)))
    if [[ "$2" != 0 ]] && ! grep -q '^not ok - ' "$1"; then
        echo "not ok - $3 exited $2"
        sed 's/^/#   /' "$1"
        FAILED=$((FAILED + 1))
    fi
}

# --- the devices -------------------------------------------------------------

create_device thermo-1 S1
create_device thermo-2 S2
create_device valve-9 S9
create_device will-dev SW
create_device paho-dev SP
create_device off-dev SOFF
create_device ctl-311 SC311 # the control plane's paho devices, one per MQTT version
create_device ctl-5 SC5
create_device ctl-away SCAWAY # never connects
"$BIN" devices disable off-dev >/dev/null || { echo "not ok - glassbox devices disable off-dev"; exit 1; }

# --- the mosquitto checks ----------------------------------------------------

# Device QoS 1 publish recorded with a `received` state (V = mqttv311 / mqttv5).
device_publish_recorded() {
    local v="$1" c="$2"
    pub thermo-1 "$S1" -V "$v" -t devices/thermo-1/temp -q 1 -m "{\"c\":$c}" || return 1
    events_until "any(e['type'] == 'device.message' and e.get('subject') == 'devices/thermo-1/temp'
        and e.get('data') == {'c': $c} and e.get('source') == 'mqtt/thermo-1' and e.get('device') == 'thermo-1'
        and states(e, 'received') for e in events)" --device thermo-1
}
check "mosquitto 3.1.1: device QoS 1 publish recorded as device.message with a received state" \
    device_publish_recorded mqttv311 21
check "mosquitto 5.0: device QoS 1 publish recorded as device.message with a received state" \
    device_publish_recorded mqttv5 22

# An operator subscribed to devices/# gets a device's message; the event shows it delivered to it.
operator_receives() {
    local v="$1" sub="op-watch-$1"
    sub_start "$sub" -V "$v" -i "$sub" "${OP[@]}" -t 'devices/#' -q 1 -C 1 || return 1
    pub thermo-2 "$S2" -V "$v" -t devices/thermo-2/hum -q 1 -m "{\"rh\":\"$v\"}" || return 1
    sub_wait "$sub" || return 1
    expect_received "$sub" "devices/thermo-2/hum {\"rh\":\"$v\"}" || return 1
    events_until "any(e.get('subject') == 'devices/thermo-2/hum' and e.get('data') == {'rh': '$v'}
        and states(e, 'delivered', '$sub') for e in events)" --device thermo-2
}
check "mosquitto 3.1.1: operator subscribed to devices/# receives a device message; event delivered to it" \
    operator_receives mqttv311
check "mosquitto 5.0: operator subscribed to devices/# receives a device message; event delivered to it" \
    operator_receives mqttv5

# QoS 2 both ways: device publishes QoS 2 (PUBREC/PUBREL/PUBCOMP), an operator
# subscribed at QoS 2 gets it at QoS 2, once.
qos2_round_trip() {
    local v="$1" sub="q2-$1"
    # No -C: the subscriber runs its -W 3 out, so that a duplicate would show.
    SUB_W=3 SUB_FMT='MSG %t %p qos=%q' sub_start "$sub" -V "$v" -i "$sub" "${OP[@]}" -q 2 -t devices/thermo-1/q2 ||
        return 1
    pub thermo-1 "$S1" -V "$v" -d -t devices/thermo-1/q2 -q 2 -m "exactly-once-$v" || return 1
    grep -q 'received PUBCOMP' "$TMP/pub.out" || { why "no PUBCOMP: $(cat "$TMP/pub.out")"; return 1; }
    wait "${SUB_PID[$sub]}" # exits 27 at its -W timeout
    expect_received "$sub" "devices/thermo-1/q2 exactly-once-$v qos=2" || return 1
    events_until "any(e.get('subject') == 'devices/thermo-1/q2'
        and __import__('base64').b64decode(e.get('data_base64', '')) == b'exactly-once-$v'
        and states(e, 'delivered', '$sub') for e in events)" --device thermo-1
}
check "mosquitto 3.1.1: QoS 2 publish and subscribe round trip (received once, at QoS 2)" qos2_round_trip mqttv311
check "mosquitto 5.0: QoS 2 publish and subscribe round trip (received once, at QoS 2)" qos2_round_trip mqttv5

# A retained message reaches a subscriber that comes later; an empty retained publish clears it.
retained_reaches_later_subscriber() {
    pub valve-9 "$S9" -V mqttv311 -t devices/valve-9/state -q 1 -r -m open || return 1
    if ! mosquitto_sub "${H[@]}" -V mqttv5 -i retained-late "${OP[@]}" -t devices/valve-9/state -C 1 -W "$WAIT" \
        -F '%t %p retained=%r' >"$TMP/retained.out" 2>&1; then
        why "the later subscriber got nothing: $(cat "$TMP/retained.out")"
        return 1
    fi
    [[ "$(cat "$TMP/retained.out")" == "devices/valve-9/state open retained=1" ]] ||
        { why "got [$(cat "$TMP/retained.out")]"; return 1; }
    pub valve-9 "$S9" -V mqttv311 -t devices/valve-9/state -q 1 -r -n || return 1
    # Cleared: a new subscriber gets nothing within 1s (mosquitto_sub -W exits 27 on timeout).
    local rc=0
    mosquitto_sub "${H[@]}" -i retained-gone "${OP[@]}" -t devices/valve-9/state -C 1 -W 1 \
        >"$TMP/gone.out" 2>&1 || rc=$?
    [[ "$rc" != 0 ]] || { why "the cleared retained message still arrived: $(cat "$TMP/gone.out")"; return 1; }
}
check "mosquitto: a retained message reaches a later subscriber, an empty retained publish clears it" \
    retained_reaches_later_subscriber

# Persistent session: subscribe at QoS 1 without clean session, go away, messages
# published meanwhile arrive on reconnect with the same client id.
offline_queue() {
    local v="$1" sub="persist-$1" expiry=()
    [[ "$v" == mqttv5 ]] && expiry=(-x 300)
    if ! mosquitto_sub "${H[@]}" -V "$v" -c "${expiry[@]}" -i "$sub" "${OP[@]}" -q 1 -t "devices/valve-9/queued-$v" \
        -E -W "$WAIT" >"$TMP/$sub.first" 2>&1; then
        why "first subscribe failed: $(cat "$TMP/$sub.first")"
        return 1
    fi
    local i
    for i in 1 2 3; do
        pub valve-9 "$S9" -V "$v" -t "devices/valve-9/queued-$v" -q 1 -m "q$i" || return 1
    done
    if ! mosquitto_sub "${H[@]}" -V "$v" -c "${expiry[@]}" -i "$sub" "${OP[@]}" -q 1 -t "devices/valve-9/queued-$v" \
        -C 3 -W "$WAIT" -F 'MSG %t %p' >"$TMP/$sub.out" 2>&1; then
        why "reconnected subscriber did not get 3 messages: $(cat "$TMP/$sub.out")"
        return 1
    fi
    expect_received "$sub" "$(printf 'devices/valve-9/queued-%s q%s\n' "$v" 1 "$v" 2 "$v" 3)"
}
check "mosquitto 3.1.1: persistent session (-c) gets the QoS 1 messages queued while it was offline" \
    offline_queue mqttv311
check "mosquitto 5.0: persistent session (-c -x 300) gets the QoS 1 messages queued while it was offline" \
    offline_queue mqttv5

# Last will: a client killed with SIGKILL has its will published; the
# disconnect is recorded with reason connection_lost.
last_will() {
    local v="$1" watch="will-watch-$1" dying="will-client-$1"
    sub_start "$watch" -V "$v" -i "$watch" "${OP[@]}" -t devices/will-dev/status -q 1 -C 1 || return 1
    sub_start "$dying" -V "$v" -i will-dev -u will-dev -P "$SW" -t devices/will-dev/cmd \
        --will-topic devices/will-dev/status --will-payload "gone-$v" --will-qos 1 || return 1
    { kill -KILL "${SUB_PID[$dying]}" && wait "${SUB_PID[$dying]}"; } 2>/dev/null
    sub_wait "$watch" || return 1
    expect_received "$watch" "devices/will-dev/status gone-$v" || return 1
    events_until "sum(e['type'] == 'device.disconnected' and (e.get('data') or {}).get('reason') == 'connection_lost'
        for e in events) >= $2" --device will-dev --type device.disconnected
}
check "mosquitto 3.1.1: the will of a SIGKILLed client is delivered; disconnect recorded as connection_lost" \
    last_will mqttv311 1
check "mosquitto 5.0: the will of a SIGKILLed client is delivered; disconnect recorded as connection_lost" \
    last_will mqttv5 2

# Refused connections: mosquitto_pub exits with the expected status (3.1.1: the
# CONNACK return code, 4 bad user name or password / 5 not authorized; 5.0: any
# failure, as mosquitto_pub 2.0.11 aborts on a refused 5.0 CONNACK whatever the
# broker, even mosquitto itself) and a device.connection_refused event is
# recorded for the device (N: how many there should be by now).
refused() {
    local v="$1" dev="$2" secret="$3" want_rc="$4" n="$5" rc=0
    mosquitto_pub "${H[@]}" -V "$v" -i "$dev" -u "$dev" -P "$secret" -t "devices/$dev/x" -q 1 -m x \
        >"$TMP/refused.out" 2>&1 || rc=$?
    if [[ "$rc" == 0 || ("$want_rc" != any && "$rc" != "$want_rc") ]]; then
        why "mosquitto_pub exited $rc, expected ${want_rc/any/non-zero}: $(cat "$TMP/refused.out")"
        return 1
    fi
    # One event per peer and interval stands for every refusal in it, naming
    # the claimed ids; it is about the device when all of them claimed it.
    events_until "sum(e['data'].get('count', 1) for e in events if e['type'].endswith('.connection_refused')
        and '$dev' in e['data'].get('claimed', [])) >= $n" --since 10m --limit 1000
}
check "mosquitto 3.1.1: wrong secret refused (CONNACK 4); the refusal recorded" \
    refused mqttv311 thermo-1 wrong-secret 4 1
check "mosquitto 5.0: wrong secret refused; the refusal recorded" \
    refused mqttv5 thermo-1 wrong-secret any 2
check "mosquitto 3.1.1: unknown device refused (CONNACK 4); the refusal recorded" \
    refused mqttv311 ghost-7 whatever 4 1
check "mosquitto 3.1.1: disabled device refused (CONNACK 5); the refusal recorded" \
    refused mqttv311 off-dev "$SOFF" 5 1

# ACLs: a device publishing outside devices/<id>/ is refused (5.0: PUBACK
# "not authorized") and recorded as an mqtt.publish_refused event, without
# its payload, dropped with reason acl_denied; subscribing there is refused.
acl_publish_denied() {
    local v="$1" payload="{\"acl\":\"$1\"}"
    pub thermo-1 "$S1" -V "$v" -t other/topic -q 1 -m "$payload" || return 1
    if [[ "$v" == mqttv5 ]] && ! grep -qi 'not authori' "$TMP/pub.err"; then
        why "5.0 PUBACK was not 'not authorized' (0x87): [$(cat "$TMP/pub.err")]"
        return 1
    fi
    events_until "any(e.get('type') == 'mqtt.publish_refused' and e.get('subject') == 'other/topic'
        and e['data'].get('reason') == 'acl_denied' and e['data'].get('bytes') == ${#payload}
        and any(s.get('detail', '').startswith('acl_denied') for s in states(e, 'dropped'))
        and not states(e, 'delivered') for e in events)" --device thermo-1 --state dropped
}
check "mosquitto 3.1.1: device publish to other/topic recorded as refused, acl_denied" acl_publish_denied mqttv311
check "mosquitto 5.0: device publish to other/topic refused (PUBACK 0x87), recorded as refused, acl_denied" \
    acl_publish_denied mqttv5

acl_subscribe_denied() {
    mosquitto_sub "${H[@]}" -V "$1" -i thermo-1 -u thermo-1 -P "$S1" -t 'other/#' -C 1 -W 3 >"$TMP/acl-sub.out" 2>&1
    grep -q 'subscription requests were denied' "$TMP/acl-sub.out" ||
        { why "subscription not refused: $(cat "$TMP/acl-sub.out")"; return 1; }
}
check "mosquitto 3.1.1: device subscription to other/# refused in its SUBACK" acl_subscribe_denied mqttv311
check "mosquitto 5.0: device subscription to other/# refused in its SUBACK" acl_subscribe_denied mqttv5

# --- the paho checks ----------------------------------------------------------

if python3 "$ROOT/scripts/interop_paho.py" 127.0.0.1 "$MQTT_PORT" paho-dev "$SP" "$TOKEN" "$GLASSBOX_SERVER" \
    >"$TMP/paho.out" 2>&1; then
    paho_rc=0
else
    paho_rc=$?
fi
tally "$TMP/paho.out" "$paho_rc" scripts/interop_paho.py

# --- the device control plane: the glassbox CLI and a paho device ---------------

# paho_device NAME DEVICE SECRET VERSION ACTION ARGS...: scripts/interop_control.py
# plays the device (see its header; output in $TMP/NAME.out); its `ok` / `not ok`
# line is printed and counted. Fails if it failed.
paho_device() {
    local name="$1" rc=0
    shift
    python3 "$ROOT/scripts/interop_control.py" 127.0.0.1 "$MQTT_PORT" "$@" >"$TMP/$name.out" 2>&1 || rc=$?
    tally "$TMP/$name.out" "$rc" "scripts/interop_control.py (device $1, MQTT $3, $4)"
    [[ "$rc" == 0 ]] || { why "the paho device failed (its line above)"; return 1; }
}

# cli OUT ARGS...: runs `glassbox ARGS`, its stdout in OUT.
cli() {
    local out="$1"
    shift
    if ! "$BIN" "$@" >"$out" 2>"$TMP/cli.err"; then
        why "glassbox $* failed: $(cat "$out" "$TMP/cli.err")"
        return 1
    fi
}

# json_holds FILE CONDITION: the Python expression CONDITION holds of the JSON
# document `doc` in FILE (an error in it goes to stderr). json_check: the same,
# with a `why` when it does not.
json_holds() {
    python3 -c '
import json, sys
doc = json.load(open(sys.argv[2]))
sys.exit(0 if eval("(" + sys.argv[1] + ")") else 1)
' "$2" "$1"
}
json_check() {
    if ! json_holds "$1" "$2" 2>>"$TMP/why"; then
        why "expected $2 of: $(head -c 1500 "$1" | tr -s ' \n' ' ')"
        return 1
    fi
}

# cli_until OUT CONDITION ARGS...: polls `glassbox ARGS` (stdout in OUT) until
# json_holds OUT CONDITION, for at most WAIT seconds.
cli_until() {
    local out="$1" cond="$2"
    shift 2
    local deadline=$((SECONDS + WAIT))
    while :; do
        if "$BIN" "$@" >"$out" 2>"$TMP/cli.err" && json_holds "$out" "$cond" 2>>"$TMP/cli.err"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            why "glassbox $* did not show $cond within ${WAIT}s; last: $(head -c 1500 "$out" | tr -s ' \n' ' ')" \
                "$(cat "$TMP/cli.err")"
            return 1
        fi
        sleep 0.2
    done
}

# offline DEVICE: waits until the server no longer counts DEVICE as connected
# (a paho device that just disconnected).
offline() {
    cli_until "$TMP/offline.json" "'$1' in [d['id'] for d in doc]" devices list --connected false --limit 1000 --json
}

# json_field FILE KEY: prints doc[KEY] of the JSON document in FILE.
json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

DELTA='{"mode":"eco","fan":{"speed":2}}'
PY_DELTA="{'mode': 'eco', 'fan': {'speed': 2}}"

# Desired state set while the device is offline reaches it as a delta when it
# connects and subscribes; its report clears the delta.
shadow_sync() {
    local v="$1" dev="$2" secret="$3"
    offline "$dev" || return 1
    cli "$TMP/desired.json" control desired "$dev" mode=eco fan.speed=2 --json || return 1
    json_check "$TMP/desired.json" "doc['version'] == 1 and doc['desired'] == doc['delta'] == $PY_DELTA" || return 1
    paho_device "shadow-$v" "$dev" "$secret" "$v" shadow-sync "$DELTA" || return 1
    cli "$TMP/shadow.json" devices shadow "$dev" --json || return 1
    json_check "$TMP/shadow.json" "doc['delta'] == {} and doc['version'] == 2
        and doc['desired'] == doc['reported'] == $PY_DELTA" || return 1
    events_until "any(e['type'] == 'device.shadow.updated' and e['data'].get('actor') == 'device'
        and e['data'].get('version') == 2 and e['data'].get('delta') == {} for e in events)" \
        --device "$dev" --type device.shadow.updated
}
check "paho 3.1.1 + CLI: control desired while offline, the device reports it: devices shadow: no delta, version 2" \
    shadow_sync 3.1.1 ctl-311 "$SC311"
check "paho 5.0 + CLI: control desired while offline, the device reports it: devices shadow: no delta, version 2" \
    shadow_sync 5.0 ctl-5 "$SC5"

declare -A COMMAND # MQTT version -> the id of the command of command_queued

# A command to an offline device is queued, sent once the device subscribes,
# and finished by its answer.
command_queued() {
    local v="$1" dev="$2"
    offline "$dev" || return 1
    cli "$TMP/send.json" control send "$dev" reboot --payload '{"delay":1}' --ttl 5m --json || return 1
    json_check "$TMP/send.json" "doc['state'] == 'queued' and doc['name'] == 'reboot' and doc['payload'] == {'delay': 1}
        and doc['device'] == '$dev' and doc['id']" || return 1
    COMMAND[$v]="$(json_field "$TMP/send.json" id)"
}
command_answered() {
    local v="$1" dev="$2" secret="$3" id="${COMMAND[$1]:-}"
    [[ -n "$id" ]] || { why "no queued command (see the check above)"; return 1; }
    paho_device "command-$v" "$dev" "$secret" "$v" command "$id" reboot '{"delay":1}' succeeded '{"rebooted":true}' ||
        return 1
    cli_until "$TMP/command.json" "doc['state'] == 'succeeded' and doc['response'] == {'rebooted': True}
        and doc['id'] == '$id'" control command "$id" --json || return 1
    cli_until "$TMP/commands.json" "[c['state'] for c in doc if c['id'] == '$id'] == ['succeeded']" \
        control commands --device "$dev" --json || return 1
    # The whole story on the command's chain; sent once: when the device subscribed.
    local answer="True"
    [[ "$v" == 5.0 ]] && answer="any(e['type'] == 'device.message'
        and e.get('subject') == '\$glassbox/devices/$dev/commands/reboot/response' for e in doc['events'])"
    cli_until "$TMP/trace.json" "[e['type'] for e in doc['events'] if e['type'].startswith('device.command.')]
        == ['device.command.' + s for s in ('queued', 'in_transit', 'delivered', 'succeeded')] and $answer" \
        trace "$id" --json
}
check "CLI: control send to an offline device (paho 3.1.1 comes later): state queued" command_queued 3.1.1 ctl-311
check "paho 3.1.1 + CLI: queued command answered: succeeded; its trace: queued, in_transit once, delivered, succeeded" \
    command_answered 3.1.1 ctl-311 "$SC311"
check "CLI: control send to an offline device (paho 5.0 comes later): state queued" command_queued 5.0 ctl-5
check "paho 5.0 + CLI: queued command answered: succeeded; its trace: queued, in_transit once, delivered, succeeded, reply" \
    command_answered 5.0 ctl-5 "$SC5"

# An answer to a command that has finished already is refused, with a recorded reason.
late_answer_rejected() {
    local v="$1" dev="$2" secret="$3" id="${COMMAND[$1]:-}"
    [[ -n "$id" ]] || { why "no command (see the checks above)"; return 1; }
    paho_device "answer-$v" "$dev" "$secret" "$v" answer "$id" reboot failed || return 1
    events_until "any(e['type'] == 'device.command.response_rejected' and e['data'].get('command') == '$id'
        and 'already succeeded' in e['data'].get('reason', '') for e in events)" \
        --device "$dev" --type device.command.response_rejected || return 1
    cli "$TMP/command.json" control command "$id" --json || return 1
    json_check "$TMP/command.json" "doc['state'] == 'succeeded' and doc['response'] == {'rebooted': True}"
}
check "paho 3.1.1 + CLI: a second answer to the finished command: device.command.response_rejected, still succeeded" \
    late_answer_rejected 3.1.1 ctl-311 "$SC311"
check "paho 5.0 + CLI: a second answer to the finished command: device.command.response_rejected, still succeeded" \
    late_answer_rejected 5.0 ctl-5 "$SC5"

# A command to a device that never comes expires after its ttl.
command_expires() {
    cli "$TMP/send.json" control send ctl-away x --ttl 2s --json || return 1
    json_check "$TMP/send.json" "doc['state'] == 'queued'" || return 1
    local id
    id="$(json_field "$TMP/send.json" id)"
    WAIT=5 cli_until "$TMP/command.json" "doc['state'] == 'expired' and 'time-to-live' in (doc.get('reason') or '')" \
        control command "$id" --json || return 1
    events_until "any(e['data'].get('command') == '$id' for e in events)" \
        --device ctl-away --type device.command.expired
}
check "CLI: control send --ttl 2s to an offline device: control command shows it expired within 5s" command_expires

# `control send --wait` says queued at once, then each step, and waits for the
# device's answer: `failed` makes it exit non-zero.
send_wait_failed() {
    local v="$1" dev="$2" secret="$3" action=("${@:4}") json=()
    [[ "$v" == 5.0 ]] && json=(--json)
    offline "$dev" || return 1
    timeout $((WAIT + 5)) "$BIN" control send "$dev" calibrate --payload '{"step":3}' --ttl 1m --wait "${json[@]}" \
        >"$TMP/wait.out" 2>"$TMP/wait.err" &
    local pid=$! rc=0
    BG_PIDS+=("$pid")
    if ! paho_device "wait-$v" "$dev" "$secret" "$v" "${action[@]}" calibrate '{"step":3}' failed '{"drift":0.4}'; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 1
    fi
    wait "$pid" || rc=$?
    if [[ "$rc" == 0 || "$rc" == 124 ]]; then
        why "control send --wait exited $rc, expected non-zero (124: it was still waiting after $((WAIT + 5))s)"
        why "its output: $(cat "$TMP/wait.out" "$TMP/wait.err")"
        return 1
    fi
    if [[ "$v" == 5.0 ]]; then
        # A JSON line per step: queued at once, failed last.
        head -n 1 "$TMP/wait.out" >"$TMP/wait.first"
        tail -n 1 "$TMP/wait.out" >"$TMP/wait.last"
        json_check "$TMP/wait.first" "doc['state'] == 'queued' and not doc['finished']" || return 1
        json_check "$TMP/wait.last" "doc['state'] == 'failed' and doc['response'] == {'drift': 0.4}
            and doc['reason'] == 'paho device says no' and doc['finished']" || return 1
    elif ! grep -q "calibrate → $dev: queued ($dev is offline" "$TMP/wait.out" ||
        ! grep -qE '^  \+[0-9.]+ m?s +failed +reason: paho device says no' "$TMP/wait.out"; then
        why "control send --wait printed: $(cat "$TMP/wait.out")"
        return 1
    fi
    grep -q 'ended failed' "$TMP/wait.err" || { why "its error: $(cat "$TMP/wait.err")"; return 1; }
}
check "paho 3.1.1 + CLI: control send --wait, the device answers failed: exits non-zero, prints failed and the reason" \
    send_wait_failed 3.1.1 ctl-311 "$SC311" command -
check "paho 5.0 + CLI: control send --wait --json, answered failed by correlation data: exits non-zero, state failed" \
    send_wait_failed 5.0 ctl-5 "$SC5" command-by-correlation

# --- the server survived it all -------------------------------------------------

if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "ok - glassbox serve still running"
    PASSED=$((PASSED + 1))
else
    echo "not ok - glassbox serve exited during the run"
    sed 's/^/#   /' "$TMP/server.err" | tail -30
    FAILED=$((FAILED + 1))
fi
if grep -q 'panicked' "$TMP/server.err"; then
    echo "not ok - the server log has a panic"
    grep -A5 'panicked' "$TMP/server.err" | sed 's/^/#   /'
    FAILED=$((FAILED + 1))
fi

echo "interop: $PASSED passed, $FAILED failed"
((FAILED == 0))
