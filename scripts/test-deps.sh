#!/usr/bin/env bash
# What the browser tests need beyond the venv: Debian's Chromium (Playwright's own browser
# download cannot work here). Installed once; a no-op when present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
echo "==> installing Debian's chromium for the browser tests"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
