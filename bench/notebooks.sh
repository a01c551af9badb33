#!/usr/bin/env bash
# mofang run vs papermill, in one command:
#   1. scripts/setup.sh                  the venv with ipykernel and papermill (idempotent)
#   2. cargo build --release -p mofang
#   3. bench/notebooks.py                cold single runs (3 and 50 cells, median of 5) and a
#                                        20-run sweep (mofang --grid -j 2 vs papermill in a loop
#                                        and under xargs -P 2); prints a Markdown report
# Both tools use the same kernel: the venv's ipykernel `python3` kernelspec.
# Knobs: BENCH_NB_REPEATS [5]  BENCH_NB_SWEEP [20]  BENCH_NB_SWEEP_REPEATS [1]
# The report is also written to bench-results/notebooks.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"

scripts/setup.sh
. scripts/env.sh

echo "bench: building mofang (release)" >&2
cargo build --release --quiet -p mofang

mkdir -p bench-results
"$MOFANG_PYTHON" bench/notebooks.py "$repo/target/release/mofang" | tee bench-results/notebooks.md
