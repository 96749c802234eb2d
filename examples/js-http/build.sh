#!/usr/bin/env bash
# Builds hello.wasm (an HTTP-triggered function: the standard wasi:http/proxy
# world in ./wit) and forward.wasm (an event-triggered function that makes an
# outbound request: world event-handler in ../../wit, with fetch) with
# componentize-js. The tool is the one pinned by examples/js-telemetry
# (package.json / package-lock.json there; `npm ci` there if it is not
# installed at that version), so both JavaScript examples share one install.
set -euo pipefail
cd "$(dirname "$0")"
tools=../js-telemetry
want=$(node -p "require('$tools/package.json').devDependencies['@bytecodealliance/componentize-js']")
have=$(node -p "require('$tools/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "== installing componentize-js $want in $tools (have: ${have:-none})"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
componentize=$tools/node_modules/.bin/componentize-js
# A wasi:http/proxy component: fetch-event handles the incoming request, fetch() goes out.
"$componentize" hello.js --wit wit --world-name proxy -o hello.wasm
# An event handler with fetch() (the http feature) but no incoming handler.
"$componentize" forward.js --wit ../../wit --world-name event-handler --disable fetch-event -o forward.wasm
echo "built $(pwd)/hello.wasm ($(du -h hello.wasm | cut -f1)) and $(pwd)/forward.wasm ($(du -h forward.wasm | cut -f1))"
