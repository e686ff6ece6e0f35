#!/usr/bin/env bash
# Creates .venv and installs Hearth with its dependencies. llama-cpp-python compiles from source
# (several minutes on 2 cores), so its wheel is built once into a cache outside the checkout and
# reused by every later install, fresh clones included.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
LLAMA_CPP_VERSION="$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)"
# ggml's AMX kernels crash on virtual machines that advertise AMX without enabling it, so the
# native build leaves them out. The wheel is native to this CPU: the cache is keyed by its flags.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'}"
CPU_KEY="$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; echo "$CMAKE_ARGS") | cksum | cut -d' ' -f1)"
WHEEL_CACHE="${HEARTH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/wheels}/$CPU_KEY"

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip wheel
fi

mkdir -p "$WHEEL_CACHE"
if ! ls "$WHEEL_CACHE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    echo "==> building llama-cpp-python $LLAMA_CPP_VERSION (about 7 minutes on 2 cores, once)"
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
        .venv/bin/python -m pip wheel --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$WHEEL_CACHE"
fi

echo "==> installing hearth and its dependencies"
.venv/bin/python -m pip install --quiet --find-links "$WHEEL_CACHE" -e '.[dev]'
