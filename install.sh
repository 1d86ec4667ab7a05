#!/usr/bin/env bash
# Install synapseg into the active Python environment.
#   ./install.sh          the tool
#   ./install.sh test     the tool plus test dependencies
# Without an NVIDIA GPU it installs a CPU-only torch first when one is at hand (the
# CUDA build is several GB and useless there); with a GPU, pip picks the CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
python=${PYTHON:-python}
if ! "$python" -c "import torch" >/dev/null 2>&1 && ! command -v nvidia-smi >/dev/null 2>&1; then
    "$python" -m pip install --quiet "torch==2.13.0" || echo "install.sh: no CPU torch wheel at hand; pip will choose torch"
fi
if [ -n "$extras" ]; then
    "$python" -m pip install --quiet -e ".[$extras]"
else
    "$python" -m pip install --quiet -e .
fi
