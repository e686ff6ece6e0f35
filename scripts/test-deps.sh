#!/usr/bin/env bash
# What the browser and desktop tests need beyond the venv: Debian's Chromium (Playwright's own
# browser download cannot work here); Xvfb, xdotool and the X libraries Qt's xcb plugin links
# (the desktop window test; Qt WebEngine's other libraries come with chromium). Installed once;
# a no-op when present.
set -euo pipefail
cd "$(dirname "$0")/.."
QT_XCB_LIBS=(libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
    libxcb-randr0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0)
# The desktop extra (pywebview, Qt WebEngine: ~670 MiB) is too big for `dev`; the desktop
# window test (`make test-desktop`, which passes "desktop") needs it in the venv.
if [ "${1:-}" = desktop ] && ! .venv/bin/python -c "import webview, PySide6.QtWebEngineWidgets" 2>/dev/null; then
    echo "==> installing the desktop extra for the desktop window test"
    mapfile -t DESKTOP < <(.venv/bin/python -c 'import tomllib
for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["desktop"]:
    print(d)')
    .venv/bin/python -m pip install --quiet "${DESKTOP[@]}"
fi
# The coding agents the agent tests run (tests/agents/package.json, pinned), from the npm
# registry into a cache keyed by that file; tests/e2e/agents.py finds them there.
AGENTS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/agents/$(sha256sum tests/agents/package.json | cut -c1-12)"
if [ ! -f "$AGENTS_DIR/.installed" ]; then
    if command -v npm >/dev/null; then
        echo "==> installing the coding agents for the agent tests into $AGENTS_DIR"
        mkdir -p "$AGENTS_DIR"
        cp tests/agents/package.json "$AGENTS_DIR/"
        # Their install scripts put the native binary, from an optional dependency, in place.
        (cd "$AGENTS_DIR" && npm install --no-audit --no-fund --loglevel=error)
        touch "$AGENTS_DIR/.installed"
    else
        echo "==> npm not found: the agent tests will say so and fail"
    fi
fi
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/Xvfb ] && [ -x /usr/bin/xdotool ] &&
    dpkg -s "${QT_XCB_LIBS[@]}" >/dev/null 2>&1; then
    exit 0
fi
echo "==> installing Debian's chromium, xvfb, xdotool and Qt's X libraries for the UI tests"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends chromium xvfb xdotool "${QT_XCB_LIBS[@]}" \
    >/dev/null
