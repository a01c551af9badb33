#!/usr/bin/env bash
# Runs mofang's main job on its embedded defaults: the model server with the example
# EfficientNet-Lite0 image classifier. Sets itself up first (scripts/setup.sh, idempotent).
# Extra arguments go to `mofang serve` (see `mofang serve --help`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$repo"
scripts/setup.sh
. scripts/env.sh
cargo build --release --quiet -p mofang
port="${MOFANG_REST_PORT:-8501}"
image="$(cd "$repo/.." && pwd -P)/shared/data/dog.jpg"
[ -f "$image" ] || image="dog.jpg"
cat <<BANNER
mofang model server, model repository examples/model-repository
  TF Serving REST  http://localhost:$port/v1/models/efficientnet_lite0
  KServe V2 REST   http://localhost:$port/v2/models/efficientnet_lite0
  image upload     http://localhost:$port/predict
try:
  curl -X POST -F image=@$image http://localhost:$port/predict
BANNER
exec target/release/mofang serve --model-repository examples/model-repository --rest-port "$port" "$@"
