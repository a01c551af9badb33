//! mofang's read-only notebook browser (like nteract's commuter): Jupyter's contents API, raw
//! files and server-rendered HTML pages over a tree of notebooks.
//!
//! [`router`] answers, under the [`BrowserOptions::base_url`] it is mounted at:
//! - `GET /api/contents/{path}?type=&format=&content=0|1&hash=0|1` — jupyter_server's contents
//!   models (directory, notebook, file), read-only (`writable: false`);
//! - `GET /files/{path}[?download=1]` — the raw bytes with their content type;
//! - `GET /view/{path}[?report=1]` — a directory listing, a notebook page or a file preview;
//! - `GET /` — a redirect to `view/`.
//!
//! Every other method is refused with 405; errors are `{"error": "..."}` (HTML pages for
//! `/view`). Files come from a [`Storage`]: a local directory ([`LocalDir`]) or the objects under
//! an `s3://bucket/prefix` ([`S3Dir`]). Paths are parsed into [`RelPath`]s, which cannot name
//! anything outside the root; [`LocalDir`] refuses symlinks that resolve outside it and
//! [`S3Dir`] only ever asks for keys under its prefix. The crate knows nothing of the CLI.

mod contents;
mod http;
mod path;
pub mod render;
mod s3;
mod storage;

use std::sync::Arc;

pub use http::router;
pub use path::RelPath;
pub use s3::S3Dir;
pub use storage::{BoxFuture, Entry, Kind, LocalDir, Storage};

/// The crate's errors; each maps to one HTTP status (see [`Error::status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not exist (or is hidden): 404.
    #[error("{0}")]
    NotFound(String),
    /// The path tries to leave the root, or the file system refuses: 403.
    #[error("{0}")]
    Forbidden(String),
    /// A bad parameter, a path of the wrong type, an unreadable notebook: 400.
    #[error("{0}")]
    BadRequest(String),
    /// A file larger than [`BrowserOptions::max_file_bytes`]: 413.
    #[error("`{path}` is {size} bytes, more than the {limit} bytes the browser serves")]
    TooLarge { path: String, size: u64, limit: u64 },
    /// A root this build cannot serve (e.g. `s3://`).
    #[error("{0}")]
    Unsupported(String),
    /// An I/O failure: 500 (the message is logged and returned; it names no secrets).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A bug or an unexpected failure: 500.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Forbidden(_) => 403,
            Error::BadRequest(_) => 400,
            Error::TooLarge { .. } => 413,
            Error::Unsupported(_) => 501,
            Error::Io { .. } | Error::Internal(_) => 500,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the browser is mounted and what it serves.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The URL prefix the router is mounted at, starting and ending with `/` (`/` standalone,
    /// e.g. `/notebooks/` when nested in the control plane); used for every link it writes.
    pub base_url: String,
    /// Largest file the browser reads (contents API, raw files, notebook pages).
    pub max_file_bytes: u64,
    /// A MathJax 3 script URL to load in pages, so LaTeX is typeset. `None` (the default):
    /// pages load no script at all and show LaTeX as written.
    pub mathjax_url: Option<String>,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            base_url: "/".into(),
            max_file_bytes: 256 * 1024 * 1024,
            mathjax_url: None,
        }
    }
}

/// The browser: a storage and its options; cheap to clone.
#[derive(Debug, Clone)]
pub struct Browser {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    storage: Arc<dyn Storage>,
    options: BrowserOptions,
}

impl Browser {
    /// A browser over `storage`. Fails when `options.base_url` does not start and end with `/`.
    pub fn new(storage: Arc<dyn Storage>, options: BrowserOptions) -> Result<Browser> {
        let base = &options.base_url;
        if !base.starts_with('/') || !base.ends_with('/') || base.contains("//") {
            return Err(Error::BadRequest(format!(
                "base URL `{base}` must start and end with `/` (e.g. `/` or `/notebooks/`)"
            )));
        }
        if base
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '<' || c == '>')
        {
            return Err(Error::BadRequest(format!(
                "base URL `{}` contains characters not allowed in a URL path",
                base.escape_debug()
            )));
        }
        Ok(Browser {
            inner: Arc::new(Inner { storage, options }),
        })
    }

    pub fn storage(&self) -> &dyn Storage {
        self.inner.storage.as_ref()
    }

    pub fn options(&self) -> &BrowserOptions {
        &self.inner.options
    }
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then finishes the requests in
/// flight (graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    browser: Browser,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(browser))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Opens a root given on the command line: a local directory, or an `s3://bucket[/prefix]` URL
/// (nothing is requested yet: `stat` the root to check the bucket). Other URL schemes give
/// [`Error::Unsupported`].
pub fn open_root(root: &str) -> Result<Arc<dyn Storage>> {
    if root.starts_with("s3://") {
        return Ok(Arc::new(S3Dir::new(root)?));
    }
    if root.contains("://") {
        return Err(Error::Unsupported(format!(
            "{root}: only local directories and s3://bucket/prefix are supported"
        )));
    }
    Ok(Arc::new(LocalDir::new(std::path::Path::new(root))?))
}
