#!/usr/bin/env bash
# Installs graphpath (editable) and its dependencies.
#   bash scripts/install.sh         # the package
#   bash scripts/install.sh --dev   # the package and the test tools
# A machine with no torch gets the local CPU wheel (torch==2.13.0) rather than the registry's
# newest CUDA build; a machine that already has torch (a GPU box) keeps its own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
"$PY" -m pip install -q -e ".${extra}"
