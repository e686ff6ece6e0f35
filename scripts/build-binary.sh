#!/usr/bin/env bash
# `make binary`: dist/hearth-server/ (PyInstaller, one folder: no unpacking at each start, which
# is slow and what antivirus tools flag), the launcher named as Tauri looks sidecars up
# (dist/hearth-server-<target triple>), and a .tar.gz of both. The binary re-runs itself as
# the engine child, so nothing else is needed on the machine.
#   DIST=dir          where to put them (default: dist)
#   HEARTH_BUILD_CACHE  PyInstaller's work folder, kept between builds (outside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
DIST="${DIST:-dist}"
WORK="${HEARTH_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/pyinstaller}"
mkdir -p "$WORK" "$DIST"
DIST="$(cd "$DIST" && pwd)"

"$PY" -m pip install --quiet "pyinstaller>=6.10"

# The Rust target triple, as `rustc -vV` prints its host line; else the same names by hand.
triple="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p' || true)"
if [ -z "$triple" ]; then
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) triple=x86_64-unknown-linux-gnu ;;
        Linux-aarch64) triple=aarch64-unknown-linux-gnu ;;
        Darwin-arm64) triple=aarch64-apple-darwin ;;
        Darwin-x86_64) triple=x86_64-apple-darwin ;;
        *) echo "unknown platform $(uname -s)-$(uname -m)" >&2; exit 1 ;;
    esac
fi

echo "==> building $DIST/hearth-server ($triple)"
# Hearth imports much of itself lazily (commands, engines, the child), and uvicorn picks its
# loop and protocols at run time: their modules are collected whole. The desktop window's
# toolkit (`hearth desktop`, Qt) and the test tools stay out: a sidecar has no window.
"$PY" -m PyInstaller --noconfirm --log-level WARN --onedir --name hearth-server \
    --distpath "$DIST" --workpath "$WORK/build" --specpath "$WORK" \
    --collect-submodules hearth --collect-data hearth \
    --collect-submodules uvicorn --collect-all llama_cpp \
    --copy-metadata hearth \
    --exclude-module webview --exclude-module PySide6 --exclude-module qtpy \
    --exclude-module tkinter --exclude-module playwright \
    hearth/sidecar.py

launcher="$DIST/hearth-server-$triple"
cat > "$launcher" <<'SH'
#!/bin/sh
# The sidecar Tauri starts: the hearth-server folder beside it (exec keeps the pid, so the
# app's kill reaches the server itself).
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/hearth-server/hearth-server" "$@"
SH
chmod +x "$launcher"
tar -C "$DIST" -czf "$DIST/hearth-server-$triple.tar.gz" hearth-server "hearth-server-$triple"
du -sh "$DIST/hearth-server" "$DIST/hearth-server-$triple.tar.gz"
