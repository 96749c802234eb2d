#!/usr/bin/env bash
# Builds {{name}}.wasm from handler.js with componentize-js (pinned in
# package.json; installed with npm if it is not there at that version),
# against ./wit. Needs Node.js 20 and npm. No wasi:http import: for
# outbound HTTP drop "http fetch-event" from --disable (docs/functions.md).
set -euo pipefail
cd "$(dirname "$0")"
want=$(node -p 'require("./package.json").devDependencies["@bytecodealliance/componentize-js"]')
have=$(node -p 'require("./node_modules/@bytecodealliance/componentize-js/package.json").version' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "== installing componentize-js $want (have: ${have:-none})"
    npm install --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/componentize-js handler.js \
    --wit wit --world-name event-handler \
    --disable http fetch-event \
    -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(du -h {{name}}.wasm | cut -f1))"
