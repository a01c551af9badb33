//! Where the browsed files live: the [`Storage`] trait and its local-directory implementation.
//!
//! The trait is deliberately small and shaped like an object store (async, keys relative to a
//! root, no open handles, no writes) so that the `s3://` implementation on the `object_store`
//! crate ([`crate::S3Dir`]) fits it: `stat` is a HEAD (or a prefix listing for "directories"),
//! `list` a delimited listing, `read` a GET.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;

use crate::{Error, RelPath, Result};

/// A boxed future, so that `Storage` stays object-safe (`Arc<dyn Storage>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
}

/// Metadata of one key.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key, relative to the root.
    pub path: RelPath,
    pub kind: Kind,
    /// Size in bytes of a file; `None` for a directory.
    pub size: Option<u64>,
    /// Last modification time (an object store's `last_modified`).
    pub modified: SystemTime,
    /// Creation time as jupyter_server reports it: on Linux the inode change time (`st_ctime`);
    /// stores that do not know it report `modified`.
    pub created: SystemTime,
}

/// Read-only access to a tree of files under a root.
///
/// Contract for every implementation (checked by the crate's tests for [`LocalDir`]):
/// - keys are [`RelPath`]s, already free of `.`/`..`/absolute forms; an implementation must
///   still never answer for anything outside its root (e.g. through symlinks) and reports such
///   keys as [`Error::Forbidden`];
/// - a missing key is [`Error::NotFound`]; `list` of a file is [`Error::BadRequest`];
/// - `list` returns the direct children (unsorted), leaving out those that cannot be served
///   (broken links, links leaving the root, sockets and other special files);
/// - `read` returns a whole file, or [`Error::TooLarge`] when it is larger than `max_bytes`,
///   without reading it.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Metadata of `path` (the root is `RelPath::root()`).
    fn stat<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Entry>>;
    /// The children of the directory `path`.
    fn list<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Vec<Entry>>>;
    /// The bytes of the file `path`, at most `max_bytes` of them.
    fn read<'a>(&'a self, path: &'a RelPath, max_bytes: u64) -> BoxFuture<'a, Result<Bytes>>;
}

/// A local directory. Every key is resolved (symlinks followed) and must stay under the
/// canonical root; I/O runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// Opens `root`, which must be an existing directory.
    pub fn new(root: &Path) -> Result<LocalDir> {
        let canonical = std::fs::canonicalize(root).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::NotFound(format!("{} does not exist", root.display()))
            }
            _ => Error::Io {
                context: format!("cannot open {}", root.display()),
                source: e,
            },
        })?;
        if !canonical.is_dir() {
            return Err(Error::BadRequest(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(LocalDir { root: canonical })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The canonical file-system path of `path`, refused when it resolves outside the root.
    fn resolve(&self, path: &RelPath) -> Result<PathBuf> {
        let mut joined = self.root.clone();
        joined.extend(path.segments());
        let resolved = std::fs::canonicalize(&joined).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_found(path),
            _ => io_error(path, e),
        })?;
        if !resolved.starts_with(&self.root) {
            return Err(Error::Forbidden(format!(
                "`{path}` resolves outside the served directory (symlink)"
            )));
        }
        Ok(resolved)
    }

    fn stat_blocking(&self, path: &RelPath) -> Result<Entry> {
        let resolved = self.resolve(path)?;
        let meta = std::fs::metadata(&resolved).map_err(|e| io_error(path, e))?;
        entry(path.clone(), &meta).ok_or_else(|| not_found(path))
    }

    fn list_blocking(&self, path: &RelPath) -> Result<Vec<Entry>> {
        let resolved = self.resolve(path)?;
        if !resolved.is_dir() {
            return Err(Error::BadRequest(format!("`{path}` is not a directory")));
        }
        let mut out = Vec::new();
        for item in std::fs::read_dir(&resolved).map_err(|e| io_error(path, e))? {
            let item = item.map_err(|e| io_error(path, e))?;
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                tracing::debug!(dir = %path, "skipping a file name that is not UTF-8");
                continue;
            };
            let Ok(child) = path.join(&name) else {
                continue;
            };
            match self.stat_blocking(&child) {
                Ok(e) => out.push(e),
                Err(e) => tracing::debug!(path = %child, "not listed: {e}"),
            }
        }
        Ok(out)
    }

    fn read_blocking(&self, path: &RelPath, max_bytes: u64) -> Result<Bytes> {
        let resolved = self.resolve(path)?;
        let meta = std::fs::metadata(&resolved).map_err(|e| io_error(path, e))?;
        if !meta.is_file() {
            return Err(Error::BadRequest(format!("`{path}` is not a file")));
        }
        if meta.len() > max_bytes {
            return Err(Error::TooLarge {
                path: path.to_string(),
                size: meta.len(),
                limit: max_bytes,
            });
        }
        std::fs::read(&resolved)
            .map(Bytes::from)
            .map_err(|e| io_error(path, e))
    }
}

impl Storage for LocalDir {
    fn stat<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Entry>> {
        let this = self.clone();
        let path = path.clone();
        Box::pin(blocking(move || this.stat_blocking(&path)))
    }

    fn list<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Vec<Entry>>> {
        let this = self.clone();
        let path = path.clone();
        Box::pin(blocking(move || this.list_blocking(&path)))
    }

    fn read<'a>(&'a self, path: &'a RelPath, max_bytes: u64) -> BoxFuture<'a, Result<Bytes>> {
        let this = self.clone();
        let path = path.clone();
        Box::pin(blocking(move || this.read_blocking(&path, max_bytes)))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io {
            context: "file-system task failed".into(),
            source: io::Error::other(e.to_string()),
        })?
}

fn not_found(path: &RelPath) -> Error {
    Error::NotFound(format!("file or directory `{path}` does not exist"))
}

fn io_error(path: &RelPath, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::PermissionDenied {
        return Error::Forbidden(format!("permission denied: `{path}`"));
    }
    Error::Io {
        context: format!("cannot read `{path}`"),
        source,
    }
}

/// An entry for a regular file or a directory; `None` for sockets, FIFOs and devices.
fn entry(path: RelPath, meta: &std::fs::Metadata) -> Option<Entry> {
    let kind = if meta.is_dir() {
        Kind::Directory
    } else if meta.is_file() {
        Kind::File
    } else {
        return None;
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Some(Entry {
        path,
        kind,
        size: (kind == Kind::File).then_some(meta.len()),
        modified,
        created: created(meta).unwrap_or(modified),
    })
}

#[cfg(unix)]
fn created(meta: &std::fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

#[cfg(not(unix))]
fn created(meta: &std::fs::Metadata) -> Option<SystemTime> {
    meta.created().ok()
}
