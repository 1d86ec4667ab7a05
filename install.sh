#!/usr/bin/env bash
# Install synapseg into the active Python environment.
#   ./install.sh          the tool
#   ./install.sh test     the tool plus test dependencies
# Without an NVIDIA GPU it installs a CPU-only torch first when one is at hand (the
# CUDA build is several GB and useless there); with a GPU, pip picks the CUDA build.
# One line per step on stdout; pip itself stays quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
python=${PYTHON:-python}
say() { echo "install.sh: $*"; }

say "Python: $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if "$python" -c "import torch" >/dev/null 2>&1; then
    say "torch $("$python" -c 'import torch; print(torch.__version__)') already installed: kept"
elif command -v nvidia-smi >/dev/null 2>&1; then
    say "NVIDIA GPU found: pip will install torch with CUDA in the next step (large download)"
else
    say "no NVIDIA GPU: installing CPU-only torch 2.13.0 (about 1-2 minutes, no output meanwhile)"
    if ! "$python" -m pip install --quiet "torch==2.13.0" >/dev/null 2>&1; then
        say "no CPU torch 2.13.0 wheel at hand; pip will choose torch in the next step"
    fi
fi
if [ -n "$extras" ]; then
    say "installing synapseg (editable) with the '$extras' extras and their dependencies"
    "$python" -m pip install --quiet -e ".[$extras]"
else
    say "installing synapseg (editable) and its dependencies"
    "$python" -m pip install --quiet -e .
fi
version=$("$python" -c "import synapseg; print(synapseg.__version__)")
say "done: synapseg $version in $("$python" -c 'import sys; print(sys.prefix)')"
