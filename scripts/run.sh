#!/usr/bin/env bash
# Runs mofang's main job on its embedded defaults: the model server with the example
# EfficientNet-Lite0 image classifier, and beside it the control plane (jobs, queues, gang
# scheduler, local executor) with its web UI, on SQLite in target/run/data. Sets itself up first
# (scripts/setup.sh, idempotent). Extra arguments go to `mofang serve` (see `mofang serve --help`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
scripts/setup.sh
. scripts/env.sh
cargo build --release --quiet -p mofang
mofang="$repo/target/release/mofang"
port="${MOFANG_REST_PORT:-8501}"
control_port="${MOFANG_SERVER_PORT:-8600}"
data="${MOFANG_DATA_DIR:-$repo/target/run/data}"
mkdir -p "$data"
token_file="$data/admin.token"
if [ ! -s "$token_file" ]; then
    (umask 077 && "$mofang" token create --data-dir "$data" --user admin --group admin --admin >"$token_file.tmp")
    mv "$token_file.tmp" "$token_file"
fi
image="$repo/examples/data/dog.jpg"
[ -f "$image" ] || image="dog.jpg"

"$mofang" server --data-dir "$data" --port "$control_port" &
control_pid=$!
stop_control() {
    kill "$control_pid" 2>/dev/null || true
    wait "$control_pid" 2>/dev/null || true
}
trap stop_control EXIT

cat <<BANNER
mofang model server, model repository examples/model-repository
  TF Serving REST  http://localhost:$port/v1/models/efficientnet_lite0
  KServe V2 REST   http://localhost:$port/v2/models/efficientnet_lite0
  image upload     http://localhost:$port/predict
mofang control plane, data in $data
  web UI           http://localhost:$control_port/ui/   (token: $token_file)
  REST API         http://localhost:$control_port/api/v1  (OpenAPI: /api/v1/openapi.json)
try:
  curl -X POST -F image=@$image http://localhost:$port/predict
  export MOFANG_URL=http://localhost:$control_port MOFANG_TOKEN=\$(cat $token_file)
  target/release/mofang job submit examples/jobs/ddp.yaml && target/release/mofang job logs ddp -f
BANNER
"$mofang" serve --model-repository examples/model-repository --rest-port "$port" "$@"
