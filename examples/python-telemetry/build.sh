#!/usr/bin/env bash
# Builds telemetry.wasm from app.py with componentize-py (pinned in
# requirements.txt; installed with pip if another version or none is there),
# against the repository's WIT.
set -euo pipefail
cd "$(dirname "$0")"
want=$(sed -n 's/^componentize-py==//p' requirements.txt)
have=$(python3 -c 'import importlib.metadata as m; print(m.version("componentize-py"))' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "== installing componentize-py $want (have: ${have:-none})"
    python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt
fi
# The module's own entry point, so it works wherever pip put the script.
python3 -c 'import sys, componentize_py; sys.argv[0] = "componentize-py"; componentize_py.script()' \
    -d ../../wit -w event-handler componentize app -o telemetry.wasm
echo "built $(pwd)/telemetry.wasm ($(du -h telemetry.wasm | cut -f1))"
