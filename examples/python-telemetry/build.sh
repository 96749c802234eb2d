#!/usr/bin/env bash
# Builds telemetry.wasm from app.py with componentize-py (pinned in
# requirements.txt), against the repository's WIT.
set -euo pipefail
cd "$(dirname "$0")"
want=$(sed -n 's/^componentize-py==//p' requirements.txt)
if [ "$(componentize-py --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
    python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt
fi
componentize-py -d ../../wit -w event-handler componentize app -o telemetry.wasm
echo "built $(pwd)/telemetry.wasm ($(du -h telemetry.wasm | cut -f1))"
