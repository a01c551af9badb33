//! End-to-end tests of the model server's HTTP edge: each test builds its own model repository
//! in a temporary directory, starts the real server on `127.0.0.1:0` and talks to it over HTTP.
//! Expected numbers come from ONNX Runtime itself (`scripts/ort_reference.py`), never from
//! constants pasted here.
//!
//! Needs the models and the Python environment made by `scripts/setup.sh`; a test that cannot
//! find them fails and says so.

mod integration {
    mod batching;
    mod common;
    mod kserve;
    mod ner;
    mod predict;
    mod repository;
    mod server;
    mod tfserving;
}
