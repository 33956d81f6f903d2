#!/usr/bin/env bash
# Installs graphpath with its test tools (and headless Chromium for the browser test, where apt
# can install it) and runs the whole test suite, slow end-to-end and browser tests included.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; the browser test will fail" >&2
fi
exec "${PYTHON:-python3}" -m pytest "$@"
