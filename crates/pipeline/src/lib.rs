//! The image-classification pipeline of the model server: it turns an
//! uploaded image (JPEG, PNG, GIF, BMP or WebP bytes) into the normalized
//! tensor a classification model expects, and the model's scores back into
//! the top-k labelled predictions, as in the Keras "simple REST API" tutorial.
//!
//! The crate is pure computation: it knows neither HTTP nor the inference
//! backends nor the filesystem. Its configuration,
//! [`ImageClassificationConfig`], is one section of a model's YAML
//! configuration; callers read the labels file themselves and hand its text to
//! [`parse_labels`]. A request goes [`preprocess`] → model → [`top_k`].
//! Decoding runs under fixed size and memory limits so that a hostile upload
//! ends as an [`Error`], never as an out-of-memory server.

#![forbid(unsafe_code)]

mod config;
mod error;
mod postprocess;
mod preprocess;

pub use config::{ImageClassificationConfig, Layout, Normalize, ResizeFilter, Softmax};
pub use error::{Error, Result};
pub use postprocess::{Prediction, parse_labels, softmax, top_k};
pub use preprocess::{ImageTensor, preprocess};
