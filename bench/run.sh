#!/usr/bin/env bash
# mofang's benchmark, in one command, from a clean checkout:
#   1. scripts/setup.sh                (venv, ONNX Runtime, example and test models; idempotent)
#   2. bench/requirements.txt          the Python peers (Flask, gunicorn, FastAPI, uvicorn) into .venv
#   3. cargo build --release           mofang and mofang-loadgen
#   4. bench/bench.py                  every server × model × concurrency, the in-process limit,
#                                      the /predict image upload; prints one Markdown report and
#                                      writes it to bench-results/latest.md (raw: latest.json)
# Every server it starts is killed when it ends, also on failure or Ctrl-C.
#
# Knobs (environment; defaults in brackets; full list in bench/README.md):
#   BENCH_SECONDS [10]  measured seconds per scenario     BENCH_WARMUP [2]   warm-up seconds
#   BENCH_CONCURRENCY [1,8,64]   BENCH_MODELS [resnet50,tiny]
#   BENCH_SERVERS [mofang,mofang-tract,flask,gunicorn,uvicorn]   BENCH_IMAGE [1]  BENCH_LIMIT [1]
#   BENCH_MOFANG_{INSTANCES,INTRA_OP,INTER_OP,BATCHING,MAX_BATCH,QUEUE_DELAY_US,MAX_QUEUE,
#                 ALLOWED_BATCH_SIZES}, per model as BENCH_MOFANG_<RESNET50|TINY|EFFICIENTNET_LITE0>_<KEY>
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
command_line="bench/run.sh${*:+ $*}"
for var in $(compgen -e | grep '^BENCH_' | sort); do
    command_line="$var=${!var} $command_line"
done

scripts/setup.sh
. scripts/env.sh

requirements="$repo/bench/requirements.txt"
stamp="$repo/.venv/.mofang-bench-requirements.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(sha256sum "$requirements" | cut -d' ' -f1)" ]; then
    echo "bench: installing bench/requirements.txt into .venv"
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$MOFANG_PYTHON" -m pip install --quiet --requirement "$requirements" </dev/null
    sha256sum "$requirements" | cut -d' ' -f1 >"$stamp"
fi

echo "bench: building mofang and mofang-loadgen (release)"
cargo build --release --quiet -p mofang -p mofang-loadgen

# bench.py starts each server in a process group of its own and appends its id here, so that
# whatever happens to bench.py, the trap below can end every server it started.
pgids="$(mktemp "${TMPDIR:-/tmp}/mofang-bench-pgids.XXXXXX")"
bench_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    while read -r pgid; do
        kill -TERM -- "-$pgid" 2>/dev/null || true
    done <"$pgids"
    sleep 0.5
    while read -r pgid; do
        kill -KILL -- "-$pgid" 2>/dev/null || true
    done <"$pgids"
    rm -f "$pgids"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BENCH_PGID_FILE="$pgids" BENCH_COMMAND="$command_line" "$MOFANG_PYTHON" bench/bench.py &
bench_pid=$!
wait "$bench_pid"
