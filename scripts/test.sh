#!/usr/bin/env bash
# Runs the whole test suite: formatting, clippy, then every test with cargo-nextest.
# Sets itself up first (scripts/setup.sh, idempotent). Extra arguments go to nextest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
scripts/setup.sh --with-compat
. scripts/env.sh
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test: installing cargo-nextest"
    cargo install --locked --quiet cargo-nextest
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
profile=default
[ "${CI:-}" = "true" ] && profile=ci
cargo nextest run --workspace --profile "$profile" "$@"
