#!/usr/bin/env bash
# Builds telemetry.wasm from telemetry.js with componentize-js, pinned in
# package.json / package-lock.json (`npm ci` if it is not installed at that
# version), against the repository's WIT. The WASI features the function
# does not need are left out, so the component imports no wasi:http.
set -euo pipefail
cd "$(dirname "$0")"
want=$(node -p 'require("./package.json").devDependencies["@bytecodealliance/componentize-js"]')
have=$(node -p 'require("./node_modules/@bytecodealliance/componentize-js/package.json").version' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "== installing componentize-js $want (have: ${have:-none})"
    npm ci --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/componentize-js telemetry.js \
    --wit ../../wit --world-name event-handler \
    --disable http fetch-event \
    -o telemetry.wasm
echo "built $(pwd)/telemetry.wasm ($(du -h telemetry.wasm | cut -f1))"
