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
if [[ ",$extras," == *",test,"* ]] && ! command -v Xvfb >/dev/null 2>&1; then
    # The napari plugin's tests need an X server with OpenGL (Xvfb + Mesa).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Xvfb and Mesa (Debian packages) for the napari plugin's headless tests"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            xvfb libgl1 libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
            libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
            libxcb-shape0 libxcb-cursor0 libdbus-1-3; } >/dev/null 2>&1 \
            || say "could not install Xvfb: the napari tests will be skipped"
    else
        say "no Xvfb (install the xvfb package as root): the napari tests will be skipped"
    fi
fi
version=$("$python" -c "import synapseg; print(synapseg.__version__)")
say "done: synapseg $version in $("$python" -c 'import sys; print(sys.prefix)')"
