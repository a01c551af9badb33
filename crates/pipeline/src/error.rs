//! The crate's error type.

/// What can go wrong in the pipeline.
///
/// Every variant except [`Error::InvalidConfig`] describes a problem with the
/// uploaded image, and its message is written for the end user who sent it.
/// [`Error::InvalidConfig`] is a problem with the model's configuration and
/// belongs to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request carried no image bytes at all.
    #[error("empty image")]
    EmptyImage,

    /// The bytes are not one of the image formats this crate decodes.
    #[error("unsupported or unrecognised image format; expected JPEG, PNG, GIF, BMP or WebP")]
    UnsupportedFormat,

    /// The format was recognised but the data could not be decoded.
    #[error("the image could not be decoded: {0}")]
    Decode(String),

    /// The image exceeds the decoding limits (dimensions or memory).
    #[error("{0}")]
    TooLarge(String),

    /// The pipeline configuration is not usable.
    #[error("invalid image classification pipeline configuration: {0}")]
    InvalidConfig(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
