#!/usr/bin/env bash
# Set up the Python tooling mofang's tests and examples use, idempotently:
#   1. <repo>/.venv                      (python3 -m venv), if missing
#   2. scripts/requirements.txt          installed, if changed since the last install
#      scripts/requirements-notebooks.txt the same (ipykernel, papermill, nbformat: `mofang run`)
#      scripts/requirements-notebook-browser.txt the same (jupyter_server: the browser tests' reference)
#      scripts/requirements-control.txt the same (openapi-spec-validator: the control plane's tests)
#      scripts/requirements-s3.txt the same (moto's S3 server, boto3: the s3:// tests)
#      and Chromium for the browser's page tests (scripts/setup-chromium.sh; a failure only warns)
#      and PostgreSQL for the store's tests (scripts/setup-postgres.sh; a failure only warns)
#   3. the example EfficientNet-Lite0    examples/model-repository/efficientnet_lite0/{1/model.onnx,labels.txt}
#   4. the test models                   target/test-models/*.onnx (+ ner/ vocab, tags, transitions)
#   5. with --with-compat only: <repo>/.venv-compat with scripts/requirements-compat.txt
#      (tensorflow-cpu, tensorflow-serving-api, tritonclient: the clients the compatibility
#      tests drive; about 1.6 GB, so `scripts/run.sh` does not ask for it)
# Steps 3 and 4 run only when an output is missing or the generator script changed; each
# keeps the sha256 of its generator in a stamp file next to its outputs. Prints one line per
# step it performs and nothing when everything is current; a failing step's output is shown.
# Needs no terminal (CI=true is fine). Run a generator directly to see its report (model
# inputs/outputs, the EfficientNet top 5 for dog.jpg, ResNet-50 timing).
# Afterwards `. scripts/env.sh` sets MOFANG_PYTHON, ORT_DYLIB_PATH and friends.
#
# Environment: MOFANG_BOOTSTRAP_PYTHON  the interpreter that creates the venv (default python3)
set -euo pipefail

with_compat=0
for arg in "$@"; do
    case "$arg" in
    --with-compat) with_compat=1 ;;
    *)
        echo "setup: unknown argument: $arg (known: --with-compat)" >&2
        exit 2
        ;;
    esac
done

scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(dirname "$scripts")"
venv="$repo/.venv"
python="$venv/bin/python"

example_dir="$repo/examples/model-repository/efficientnet_lite0"
test_models_dir="$repo/target/test-models"
test_models=(add_mul tiny dtypes strings image_nchw image_nhwc resnet50 ner)

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# stamp_current STAMP FILE: true if STAMP holds FILE's sha256
stamp_current() {
    [ -f "$1" ] && [ "$(cat "$1")" = "$(sha256 "$2")" ]
}

# quietly CMD...: run CMD without stdin; show its output only if it fails
quietly() {
    local log
    if ! log="$("$@" </dev/null 2>&1)"; then
        printf '%s\n' "$log" >&2
        echo "setup: failed: $*" >&2
        return 1
    fi
}

# one setup at a time (tests may start several)
mkdir -p "$repo/target"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$repo/target/.mofang-setup.lock"
    flock 9
fi

# 1. virtual environment
if [ ! -x "$python" ]; then
    echo "setup: creating $venv"
    quietly "${MOFANG_BOOTSTRAP_PYTHON:-python3}" -m venv "$venv"
    rm -f "$venv/.mofang-requirements.sha256"
fi

# 2. requirements: each file installed when it changed since its last install (a stamp per file)
install_requirements() {
    local file="$scripts/$1"
    local stamp="$venv/.mofang-${1%.txt}.sha256"
    if ! stamp_current "$stamp" "$file"; then
        echo "setup: installing scripts/$1 into .venv"
        quietly env PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$python" -m pip install --quiet --requirement "$file"
        sha256 "$file" >"$stamp"
    fi
}
for file in requirements.txt requirements-notebooks.txt requirements-notebook-browser.txt \
    requirements-control.txt requirements-s3.txt; do
    install_requirements "$file"
done
# PostgreSQL server binaries (system package): the metadata store's conformance suite runs on
# throwaway clusters of it. Without it only those tests fail, so a failure here warns.
if ! "$scripts/setup-postgres.sh"; then
    echo "setup: warning: no PostgreSQL; the store's PostgreSQL tests will fail" >&2
fi
# Chromium (system package; silent when already installed). Without it only the page tests
# fail, so a failure here warns instead of stopping the set-up.
if ! "$scripts/setup-chromium.sh"; then
    echo "setup: warning: no Chromium; the notebook browser's page tests will fail" >&2
fi

# 3. example model
example_script="$scripts/make_example_model.py"
example_stamp="$example_dir/.mofang-generator.sha256"
if [ ! -f "$example_dir/1/model.onnx" ] || [ ! -f "$example_dir/labels.txt" ] ||
    ! stamp_current "$example_stamp" "$example_script"; then
    echo "setup: building examples/model-repository/efficientnet_lite0 (make_example_model.py)"
    rm -f "$example_stamp"
    quietly "$python" "$example_script" --out-dir "$example_dir"
    sha256 "$example_script" >"$example_stamp"
fi

# 4. test models
test_script="$scripts/make_test_models.py"
test_stamp="$test_models_dir/.mofang-generator.sha256"
missing=0
for name in "${test_models[@]}"; do
    [ -f "$test_models_dir/$name.onnx" ] || missing=1
done
for file in ner/vocab.txt ner/tags.txt ner/trans.json; do
    [ -f "$test_models_dir/$file" ] || missing=1
done
if [ "$missing" = 1 ] || ! stamp_current "$test_stamp" "$test_script"; then
    echo "setup: building target/test-models (make_test_models.py)"
    rm -f "$test_stamp"
    quietly "$python" "$test_script" --out-dir "$test_models_dir"
    sha256 "$test_script" >"$test_stamp"
fi

# 5. compatibility-test clients
if [ "$with_compat" = 1 ]; then
    compat_venv="$repo/.venv-compat"
    compat_requirements="$scripts/requirements-compat.txt"
    compat_stamp="$compat_venv/.mofang-requirements.sha256"
    if [ ! -x "$compat_venv/bin/python" ]; then
        echo "setup: creating $compat_venv"
        quietly "${MOFANG_BOOTSTRAP_PYTHON:-python3}" -m venv "$compat_venv"
        rm -f "$compat_stamp"
    fi
    if ! stamp_current "$compat_stamp" "$compat_requirements"; then
        echo "setup: installing scripts/requirements-compat.txt into .venv-compat (about a minute)"
        quietly env PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$compat_venv/bin/python" -m pip install --quiet --no-deps --requirement "$compat_requirements"
        sha256 "$compat_requirements" >"$compat_stamp"
    fi
fi

# scripts/env.sh must find what it exports
(
    unset ORT_DYLIB_PATH
    # shellcheck source=scripts/env.sh
    . "$scripts/env.sh"
    if [ -z "${ORT_DYLIB_PATH:-}" ] || [ ! -f "$ORT_DYLIB_PATH" ]; then
        echo "setup: scripts/env.sh found no libonnxruntime.so.* in $venv" >&2
        exit 1
    fi
)
