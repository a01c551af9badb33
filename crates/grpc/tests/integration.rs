//! End-to-end tests of the model server's gRPC edge: each test builds its own model repository
//! in a temporary directory, starts the real gRPC server on `127.0.0.1:0` and talks to it with
//! the tonic clients generated from the same .proto files. Expected numbers come from ONNX
//! Runtime itself (`scripts/ort_reference.py`), never from constants pasted here.
//!
//! Needs the models and the Python environment made by `scripts/setup.sh` (then
//! `. scripts/env.sh`); a test that cannot find them fails and says so.

mod integration {
    mod common;
    mod kserve;
    mod tfserving;
}
