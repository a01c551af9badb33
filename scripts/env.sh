# shellcheck shell=bash
# Environment for scripts and tests that use the Python tooling set up by scripts/setup.sh.
# Source it (bash or zsh), don't run it:   . scripts/env.sh
#
#   MOFANG_REPO         the repository root
#   MOFANG_PYTHON       the venv's python ($MOFANG_REPO/.venv/bin/python)
#   MOFANG_COMPAT_PYTHON the python of .venv-compat (tensorflow-serving-api, tritonclient),
#                       created by `scripts/setup.sh --with-compat`
#   MOFANG_TEST_MODELS  where scripts/make_test_models.py writes ($MOFANG_REPO/target/test-models)
#   ORT_DYLIB_PATH      the venv onnxruntime wheel's libonnxruntime.so.*, for the Rust `ort`
#                       crate's load-dynamic mode; an ORT_DYLIB_PATH already set is kept.
#
# It changes nothing else in the calling shell (no `set` options, no cd).

if [ -n "${BASH_VERSION:-}" ]; then
    _mofang_env_file="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
    # shellcheck disable=SC2296
    _mofang_env_file="${(%):-%x}"
else
    _mofang_env_file="$0"
fi
MOFANG_REPO="$(cd "$(dirname "$_mofang_env_file")/.." && pwd -P)"
MOFANG_PYTHON="$MOFANG_REPO/.venv/bin/python"
MOFANG_COMPAT_PYTHON="$MOFANG_REPO/.venv-compat/bin/python"
MOFANG_TEST_MODELS="$MOFANG_REPO/target/test-models"
export MOFANG_REPO MOFANG_PYTHON MOFANG_COMPAT_PYTHON MOFANG_TEST_MODELS

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    # The wheel names the library after its version (libonnxruntime.so.1.31.1), so look it up
    # by pattern (with find rather than a shell glob, which behaves differently in zsh).
    _mofang_ort_lib="$(find "$MOFANG_REPO/.venv/lib" -path '*/site-packages/onnxruntime/capi/libonnxruntime.so.*' \( -type f -o -type l \) 2>/dev/null | LC_ALL=C sort | tail -n 1 || true)"
    if [ -n "$_mofang_ort_lib" ]; then
        ORT_DYLIB_PATH="$_mofang_ort_lib"
        export ORT_DYLIB_PATH
    else
        echo "env.sh: no libonnxruntime.so.* under $MOFANG_REPO/.venv; run scripts/setup.sh" >&2
    fi
    unset _mofang_ort_lib
fi
unset _mofang_env_file
