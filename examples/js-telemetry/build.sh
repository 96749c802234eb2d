#!/usr/bin/env bash
# Builds telemetry.wasm from telemetry.js with the pinned componentize-js
# (package.json / package-lock.json), against the repository's WIT.
# WASI features the function does not need are left out, so the component
# imports no wasi:http.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm ci --no-audit --no-fund
fi
node_modules/.bin/componentize-js telemetry.js \
    --wit ../../wit --world-name event-handler \
    --disable http fetch-event \
    -o telemetry.wasm
echo "built $(pwd)/telemetry.wasm ($(du -h telemetry.wasm | cut -f1))"
