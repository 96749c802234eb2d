#!/usr/bin/env bash
# Builds telemetry.wasm from app.py with componentize-py (pinned in
# requirements.txt), against the repository's WIT. The tool is installed
# with pip into .tools/ here (not the system's Python, so no root and no
# clash with a distribution-managed Python), once.
set -euo pipefail
cd "$(dirname "$0")"
want=$(sed -n 's/^componentize-py==//p' requirements.txt)
if [ ! -d ".tools/componentize_py-$want.dist-info" ]; then
    echo "== installing componentize-py $want into examples/python-telemetry/.tools"
    rm -rf .tools
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools -r requirements.txt
fi
PYTHONPATH="$PWD/.tools" python3 -c \
    'import sys, componentize_py; sys.argv[0] = "componentize-py"; componentize_py.script()' \
    -d ../../wit -w event-handler componentize app -o telemetry.wasm
echo "built $(pwd)/telemetry.wasm ($(du -h telemetry.wasm | cut -f1))"
