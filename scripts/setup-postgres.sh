#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the metadata store's tests (they start throwaway
# clusters of it; nothing runs as a service). Idempotent and silent when already installed.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo -n"; else
        echo "setup-postgres: not root and no sudo: install the postgresql package" >&2
        exit 1
    fi
fi
echo "setup: installing Debian's postgresql (for the metadata store's tests)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package starts a default cluster as a service where it can; the tests do not use it.
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | while read -r version name _; do
        $sudo pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
    done
fi
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
