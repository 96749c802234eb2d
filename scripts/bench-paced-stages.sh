#!/usr/bin/env bash
# Where a paced message's latency goes inside Glassbox: one paced run
# (`glassbox bench mqtt --rate`, 4 publishers -> 1 subscriber, 64 bytes),
# then, from the record itself (recorder.db), per delivery:
# - `received` (id minted, before the commit) -> `in_transit` (committed,
#   routed and queued on the subscriber's session);
# - `in_transit` -> `delivered` (the subscriber's connection wrote it and
#   the subscriber's PUBACK came back);
# as p50/p90/p99 in microseconds, and the recorder's commit-time and
# sync-time histograms.
# The stages cover the deliveries whose `in_transit` was folded into their
# `delivered` state: those acknowledged within the delivery-state task's
# round (most). The slowest are left out, so both p99s lean low; the count
# left out is printed.
# Usage: scripts/bench-paced-stages.sh [RATE] [QOS]   (default 50000 msg/s, QoS 1)
# BIN=path/to/glassbox picks the build (default target/release/glassbox).
# Needs the sqlite3 CLI (scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-50000} QOS=${2:-1}
BIN=${BIN:-target/release/glassbox}
SECONDS_RUN=${PACED_SECONDS:-5}
# shellcheck source=scripts/bench-serve.sh
. scripts/bench-serve.sh
PER_PUB=$((RATE / 4))
"$BIN" bench mqtt --port "$MQTT" --publishers 4 --subscribers 1 --qos "$QOS" --size 64 --rate "$PER_PUB" \
  --messages $((PER_PUB * SECONDS_RUN)) --inflight 64 --username operator --password "$TOKEN" | tail -1
curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP/metrics" |
  { grep -E '^glassbox_recorder_(commit|sync)_seconds_(bucket|sum|count)' || true; } | sed 's/^glassbox_recorder_/  /'
sleep 1
kill "$PID"
wait "$PID" 2>/dev/null || true
PID=
sqlite3 "$DIR/data/recorder.db" "
WITH d AS (SELECT t.in_transit_since - e.received_at AS routed, t.at - t.in_transit_since AS acked
           FROM transitions t JOIN events e ON e.id = t.event WHERE t.in_transit_since IS NOT NULL),
     n AS (SELECT max(count(*), 2) AS c FROM d),
     r AS (SELECT routed AS v, row_number() OVER (ORDER BY routed) AS i FROM d),
     a AS (SELECT acked AS v, row_number() OVER (ORDER BY acked) AS i FROM d)
SELECT 'deliveries measured: ' || (SELECT count(*) FROM d) || '; left out (in_transit recorded on its own): '
  || (SELECT count(*) FROM transitions WHERE state = 2)
UNION ALL SELECT 'received -> in_transit us: p50 ' || (SELECT v FROM r WHERE i = (SELECT c / 2 FROM n))
  || ' p90 ' || (SELECT v FROM r WHERE i = (SELECT c * 9 / 10 FROM n))
  || ' p99 ' || (SELECT v FROM r WHERE i = (SELECT c * 99 / 100 FROM n))
UNION ALL SELECT 'in_transit -> delivered us: p50 ' || (SELECT v FROM a WHERE i = (SELECT c / 2 FROM n))
  || ' p90 ' || (SELECT v FROM a WHERE i = (SELECT c * 9 / 10 FROM n))
  || ' p99 ' || (SELECT v FROM a WHERE i = (SELECT c * 99 / 100 FROM n));"
