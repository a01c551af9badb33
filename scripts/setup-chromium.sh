#!/usr/bin/env bash
# Installs a headless-capable Chromium for the notebook browser's page tests
# (crates/notebook-browser/tests), idempotently: does nothing when `chromium` (or
# `chromium-browser`) is already on PATH or $MOFANG_CHROMIUM names an executable. Otherwise, on
# Debian/Ubuntu, installs the distribution's `chromium` package with apt-get (as root, or with
# sudo when it needs no password); needs no terminal. Elsewhere it says what to install and fails.
# Prints one line when it installs, nothing when Chromium is already there.
set -euo pipefail

if [ -n "${MOFANG_CHROMIUM:-}" ] && [ -x "${MOFANG_CHROMIUM}" ]; then
    exit 0
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-chromium: no chromium on PATH and no apt-get; install Chromium and put it on PATH (or set MOFANG_CHROMIUM)" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "setup-chromium: installing chromium needs root: run 'apt-get install -y chromium' as root (or set MOFANG_CHROMIUM)" >&2
        exit 1
    fi
fi
echo "setup-chromium: installing chromium with apt-get"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
    </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-chromium: failed: apt-get install chromium" >&2
    exit 1
fi
