#!/usr/bin/env bash
# Builds {{name}}.wasm from app.py with componentize-py (pinned in
# requirements.txt, installed with pip into .tools/ here once), against
# ./wit. Needs Python 3 and pip.
set -euo pipefail
cd "$(dirname "$0")"
want=$(sed -n 's/^componentize-py==//p' requirements.txt)
if [ ! -d ".tools/componentize_py-$want.dist-info" ]; then
    echo "== installing componentize-py $want into .tools"
    rm -rf .tools
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools -r requirements.txt
fi
PYTHONPATH="$PWD/.tools" python3 -c \
    'import sys, componentize_py; sys.argv[0] = "componentize-py"; componentize_py.script()' \
    -d wit -w event-handler componentize app -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(du -h {{name}}.wasm | cut -f1))"
