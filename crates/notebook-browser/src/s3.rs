//! [`S3Dir`]: a [`Storage`] over the objects under an `s3://bucket/prefix` (the `object_store`
//! crate), configured from the usual AWS variables as `mofang run`'s `s3://` locations are.
//!
//! Keys map one to one: the [`RelPath`] `a/b.ipynb` under `s3://bucket/pre` is the object
//! `pre/a/b.ipynb`. A [`RelPath`] has no `.`/`..`/empty segments and the prefix is always
//! followed by `/`, so no request can name a key outside the prefix (not even a sibling such as
//! `pre-other/…`). Directories are the common prefixes of a delimited listing; they have no
//! times in S3, so they report the Unix epoch (as s3contents gives them a dummy date). A key
//! that is both an object and a prefix is served as the file. Zero-byte "folder" objects
//! (`dir/`, as consoles create them) are not listed as files.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectMeta, ObjectStore as _, ObjectStoreExt as _, RetryConfig};

use crate::storage::{BoxFuture, Entry, Kind, Storage};
use crate::{Error, RelPath, Result};

/// The objects under `s3://bucket/prefix`, read-only.
#[derive(Debug, Clone)]
pub struct S3Dir {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Without leading or trailing `/`; empty for the whole bucket.
    prefix: String,
}

impl S3Dir {
    /// `s3://bucket` or `s3://bucket/prefix[/]`, configured from the environment's `AWS_*`
    /// variables. Builds the client only: nothing is requested until the first call (check the
    /// root with `stat(&RelPath::root())`).
    pub fn new(url: &str) -> Result<S3Dir> {
        S3Dir::with_config(url, &[])
    }

    /// [`S3Dir::new`] with `config` — pairs named as the environment variables are (e.g.
    /// `("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")`) — applied over the environment's.
    pub fn with_config(url: &str, config: &[(&str, &str)]) -> Result<S3Dir> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::BadRequest(format!("{url}: not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::BadRequest(format!(
                "{url}: no bucket name (expected s3://bucket/prefix)"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            let parsed = ObjectPath::parse(prefix).map_err(|e| {
                Error::BadRequest(format!("{url}: bad prefix: {}", one_line(&e.to_string())))
            })?;
            if parsed.as_ref() != prefix {
                return Err(Error::BadRequest(format!(
                    "{url}: empty, `.` or `..` segments are not allowed in the prefix"
                )));
            }
        }
        let mut builder = AmazonS3Builder::from_env();
        for (name, value) in config {
            let key = name
                .to_ascii_lowercase()
                .parse::<AmazonS3ConfigKey>()
                .map_err(|e| Error::BadRequest(format!("{name}: {}", one_line(&e.to_string()))))?;
            builder = builder.with_config(key, *value);
        }
        let mut builder = builder.with_bucket_name(bucket).with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|name| {
                config
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| (*v).to_owned())
                    .or_else(|| std::env::var(name).ok())
                    .filter(|v| !v.is_empty())
            });
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|e| {
            Error::BadRequest(format!(
                "{url}: S3 configuration: {}",
                one_line(&e.to_string())
            ))
        })?;
        Ok(S3Dir {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// `path` for messages: `s3://bucket/prefix/path`.
    fn shown(&self, path: &RelPath) -> String {
        if path.is_root() {
            self.url()
        } else {
            format!("{}/{path}", self.url())
        }
    }

    /// The object key of `path`: the prefix, then the path's segments.
    fn key(&self, path: &RelPath) -> Result<ObjectPath> {
        let mut key = self.prefix.clone();
        for segment in path.segments() {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(segment);
        }
        ObjectPath::parse(&key)
            .map_err(|e| Error::BadRequest(format!("`{path}`: {}", one_line(&e.to_string()))))
    }

    /// The listing prefix of the directory `path` (`None`: the whole bucket).
    fn dir_key(&self, path: &RelPath) -> Result<Option<ObjectPath>> {
        let key = self.key(path)?;
        Ok((!key.as_ref().is_empty()).then_some(key))
    }

    /// One line naming what went wrong: the S3 error code and message when the server sent one.
    fn error(&self, path: &RelPath, e: &object_store::Error) -> Error {
        let text = one_line(&e.to_string());
        let hint = "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN";
        match (e, s3_element(&text, "Code").as_deref()) {
            (_, Some("NoSuchBucket")) => Error::NotFound(format!(
                "{}: no such bucket `{}` (NoSuchBucket)",
                self.url(),
                self.bucket
            )),
            (object_store::Error::NotFound { .. }, _) | (_, Some("NoSuchKey")) => {
                Error::NotFound(format!("file or directory `{path}` does not exist"))
            }
            (_, Some(code)) if CREDENTIAL_CODES.contains(&code) => Error::Forbidden(format!(
                "{}: {code}: {} ({hint})",
                self.shown(path),
                s3_element(&text, "Message").unwrap_or_default()
            )),
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                _,
            ) => Error::Forbidden(format!("{}: access denied ({hint})", self.shown(path))),
            // Not a bug, but the only 500 that carries a plain message (Io repeats its source).
            (_, Some(code)) => Error::Internal(format!(
                "{}: {code}: {}",
                self.shown(path),
                s3_element(&text, "Message").unwrap_or_default()
            )),
            (_, None) => Error::Internal(format!("{}: {text}", self.shown(path))),
        }
    }

    fn file_entry(path: RelPath, meta: &ObjectMeta) -> Entry {
        let modified = SystemTime::from(meta.last_modified);
        Entry {
            path,
            kind: Kind::File,
            size: Some(meta.size),
            modified,
            created: modified,
        }
    }

    fn dir_entry(path: RelPath) -> Entry {
        Entry {
            path,
            kind: Kind::Directory,
            size: None,
            modified: SystemTime::UNIX_EPOCH,
            created: SystemTime::UNIX_EPOCH,
        }
    }

    /// True when some object lies under the directory `path`.
    async fn has_children(&self, path: &RelPath) -> Result<bool> {
        let prefix = self.dir_key(path)?;
        let mut objects = self.store.list(prefix.as_ref());
        match objects.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.error(path, &e)),
        }
    }

    async fn stat_async(&self, path: &RelPath) -> Result<Entry> {
        if path.is_root() {
            // The root exists when the bucket does (an empty prefix is an empty directory);
            // listing surfaces a missing bucket or refused credentials.
            self.has_children(path).await?;
            return Ok(S3Dir::dir_entry(path.clone()));
        }
        match self.store.head(&self.key(path)?).await {
            Ok(meta) => Ok(S3Dir::file_entry(path.clone(), &meta)),
            Err(object_store::Error::NotFound { .. }) => {
                if self.has_children(path).await? {
                    Ok(S3Dir::dir_entry(path.clone()))
                } else {
                    Err(Error::NotFound(format!(
                        "file or directory `{path}` does not exist"
                    )))
                }
            }
            Err(e) => Err(self.error(path, &e)),
        }
    }

    async fn list_async(&self, path: &RelPath) -> Result<Vec<Entry>> {
        let prefix = self.dir_key(path)?;
        let listing = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.error(path, &e))?;
        if listing.objects.is_empty() && listing.common_prefixes.is_empty() && !path.is_root() {
            // Nothing under it: a file (not a directory) or nothing at all.
            return Err(match self.store.head(&self.key(path)?).await {
                Ok(_) => Error::BadRequest(format!("`{path}` is not a directory")),
                Err(_) => Error::NotFound(format!("file or directory `{path}` does not exist")),
            });
        }
        let mut out = Vec::new();
        let mut files = BTreeSet::new();
        for meta in &listing.objects {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if prefix.as_ref() == Some(&meta.location) {
                continue; // the directory's own "folder" object
            }
            match path.join(name) {
                Ok(child) => {
                    files.insert(name.to_owned());
                    out.push(S3Dir::file_entry(child, meta));
                }
                Err(e) => tracing::debug!(key = %meta.location, "not listed: {e}"),
            }
        }
        for dir in &listing.common_prefixes {
            let Some(name) = dir.filename() else {
                continue;
            };
            if files.contains(name) {
                continue; // both an object and a prefix: served as the file
            }
            match path.join(name) {
                Ok(child) => out.push(S3Dir::dir_entry(child)),
                Err(e) => tracing::debug!(prefix = %dir, "not listed: {e}"),
            }
        }
        Ok(out)
    }

    async fn read_async(&self, path: &RelPath, max_bytes: u64) -> Result<Bytes> {
        let key = self.key(path)?;
        if key.as_ref().is_empty() {
            return Err(Error::BadRequest(format!("`{path}` is not a file")));
        }
        let result = self
            .store
            .get_opts(&key, GetOptions::default())
            .await
            .map_err(|e| self.error(path, &e))?;
        if result.meta.size > max_bytes {
            // Dropping the result closes the body unread.
            return Err(Error::TooLarge {
                path: path.to_string(),
                size: result.meta.size,
                limit: max_bytes,
            });
        }
        result.bytes().await.map_err(|e| self.error(path, &e))
    }
}

impl Storage for S3Dir {
    fn stat<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Entry>> {
        Box::pin(self.stat_async(path))
    }

    fn list<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Vec<Entry>>> {
        Box::pin(self.list_async(path))
    }

    fn read<'a>(&'a self, path: &'a RelPath, max_bytes: u64) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.read_async(path, max_bytes))
    }
}

/// S3 error codes that point at the credentials.
const CREDENTIAL_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
];

/// An element (`Code`, `Message`) of an S3 error document inside an error's text.
fn s3_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].trim().to_owned())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_keys() {
        let dir = S3Dir::new("s3://bucket/runs/2026/").expect("parses");
        assert_eq!(dir.url(), "s3://bucket/runs/2026");
        let path = RelPath::from_url("a/b%20c.ipynb").expect("path");
        assert_eq!(
            dir.key(&path).expect("key").as_ref(),
            "runs/2026/a/b c.ipynb"
        );
        assert_eq!(
            dir.key(&RelPath::root()).expect("key").as_ref(),
            "runs/2026"
        );
        let whole = S3Dir::new("s3://bucket").expect("parses");
        assert_eq!(whole.dir_key(&RelPath::root()).expect("key"), None);
        assert_eq!(whole.key(&path).expect("key").as_ref(), "a/b c.ipynb");
        // Characters object_store's `Path::from` would percent-encode stay as they are.
        let odd = RelPath::from_url("%3Cimg%3E~.ipynb").expect("path");
        assert_eq!(whole.key(&odd).expect("key").as_ref(), "<img>~.ipynb");
        for bad in ["s3://", "s3:///p", "s3://b/a/../c", "s3://b/a//c", "gs://b"] {
            assert!(S3Dir::new(bad).is_err(), "{bad}");
        }
    }
}
