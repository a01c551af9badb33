//! Where notebooks are read from and written to besides local files: `s3://bucket/key` objects
//! (the `object_store` crate), configured from the usual AWS variables.
//!
//! - [`S3Url`] parses `s3://bucket/key`; [`Input::from_arg`] and [`Output::from_arg`] turn a
//!   command-line argument (`-`, `s3://…`, else a local path) into a run's input and output.
//! - [`get`] and [`put`] read and write one whole object; a PUT is atomic per object, so readers
//!   see the previous notebook or the new one, never a part.
//! - [`Uploader`] is the output of a run on S3: the first save is a PUT awaited on the spot (so a
//!   missing bucket or refused credentials stop the run before its kernel starts); later saves
//!   hand the newest notebook to a background task that PUTs at most once per
//!   [`SAVE_INTERVAL`], always the newest state, in order; the last save is PUT right after the
//!   one in flight and awaited. A failed PUT fails the next save, and so the run.
//!
//! Configuration ([`s3_store`]): `AmazonS3Builder::from_env` reads every `AWS_*` variable it
//! knows — `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (else
//! `AWS_DEFAULT_REGION`, else us-east-1), `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), overridden by
//! `AWS_ENDPOINT_URL_S3`, `AWS_ALLOW_HTTP`, … — and plain http is allowed when the endpoint is an
//! `http://` URL (a local S3 such as moto or MinIO). Without credentials in the environment
//! object_store asks the instance metadata service (EC2, ECS, EKS), as the AWS SDKs do; shared
//! config files (`~/.aws/credentials`, `AWS_PROFILE`) are not read.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt as _, PutPayload, RetryConfig};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::run::{Input, Output};
use crate::{Error, Result};

/// The shortest time between two PUTs of a run's output while it runs (the last one excepted).
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// An `s3://bucket/key` URL naming one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub key: String,
}

impl S3Url {
    /// True when `arg` is meant as an S3 URL (`s3://…`).
    pub fn is_s3(arg: &str) -> bool {
        arg.starts_with("s3://")
    }

    /// Parses `s3://bucket/key`; the key must name an object (not empty, not ending in `/`).
    pub fn parse(url: &str) -> Result<S3Url> {
        let bad = |why: &str| Error::Storage {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| bad("no object key (expected s3://bucket/key)"))?;
        if bucket.is_empty() {
            return Err(bad("no bucket name (expected s3://bucket/key)"));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(bad("the key must name an object, not a prefix"));
        }
        let path = ObjectPath::parse(key).map_err(|e| bad(&one_line(&e.to_string())))?;
        if path.as_ref() != key {
            return Err(bad("empty, `.` or `..` key segments are not allowed"));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl S3Url {
    /// The key as object_store's path, unchanged (`Path::from` would percent-encode
    /// characters such as `<` or `~` into a different key).
    fn path(&self) -> Result<ObjectPath> {
        ObjectPath::parse(&self.key).map_err(|e| Error::Storage {
            url: self.to_string(),
            why: one_line(&e.to_string()),
        })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl Input {
    /// `-` is standard input, `s3://bucket/key` an object (parsed when the run starts, after
    /// `{parameter}` fields are filled in), anything else a local path.
    pub fn from_arg(arg: &str) -> Input {
        match arg {
            "-" => Input::Stdin,
            s if S3Url::is_s3(s) => Input::S3(s.to_owned()),
            s => Input::File(s.into()),
        }
    }
}

impl Output {
    /// `-` is standard output, `s3://bucket/key` an object, anything else a local path.
    pub fn from_arg(arg: &str) -> Output {
        match arg {
            "-" => Output::Stdout,
            s if S3Url::is_s3(s) => Output::S3(s.to_owned()),
            s => Output::File(s.into()),
        }
    }
}

/// A client for `bucket` configured from the environment (see the module documentation).
pub fn s3_store(bucket: &str) -> Result<AmazonS3> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    builder.build().map_err(|e| Error::Storage {
        url: format!("s3://{bucket}"),
        why: format!("S3 configuration: {}", one_line(&e.to_string())),
    })
}

/// The whole object at `url`.
pub async fn get(url: &S3Url) -> Result<Bytes> {
    let store = s3_store(&url.bucket)?;
    let path = url.path()?;
    let result = store.get(&path).await.map_err(|e| s3_error(url, &e))?;
    result.bytes().await.map_err(|e| s3_error(url, &e))
}

/// Writes `bytes` as the object at `url` (one PUT: the object is replaced whole).
pub async fn put(url: &S3Url, bytes: Bytes) -> Result<()> {
    let store = s3_store(&url.bucket)?;
    put_with(&store, url, bytes).await
}

async fn put_with(store: &AmazonS3, url: &S3Url, bytes: Bytes) -> Result<()> {
    let path = url.path()?;
    store
        .put(&path, PutPayload::from_bytes(bytes))
        .await
        .map(drop)
        .map_err(|e| s3_error(url, &e))
}

/// Reads a local file or an `s3://` object (a `-f` parameters file).
pub async fn read_arg(arg: &str) -> Result<Bytes> {
    if S3Url::is_s3(arg) {
        get(&S3Url::parse(arg)?).await
    } else {
        tokio::fs::read(arg)
            .await
            .map(Bytes::from)
            .map_err(|e| Error::Io {
                path: arg.to_owned(),
                source: e,
            })
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

/// One line naming what went wrong: the S3 error code and message when the server sent one.
fn s3_error(url: &S3Url, error: &object_store::Error) -> Error {
    let text = error.to_string();
    let why = match (error, s3_code(&text)) {
        (_, Some((code, _))) if code == "NoSuchBucket" => {
            format!("no such bucket `{}` (NoSuchBucket)", url.bucket)
        }
        (_, Some((code, _))) if code == "NoSuchKey" => "no such object (NoSuchKey)".to_owned(),
        (object_store::Error::NotFound { .. }, None) => "no such object".to_owned(),
        (_, Some((code, message))) if CREDENTIAL_CODES.contains(&code.as_str()) => format!(
            "{code}: {message} (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
        ),
        (_, Some((code, message))) => format!("{code}: {message}"),
        (
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
            None,
        ) => format!(
            "access denied (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN): {}",
            one_line(&text)
        ),
        _ => one_line(&text),
    };
    Error::Storage {
        url: url.to_string(),
        why,
    }
}

/// `<Code>` and `<Message>` of an S3 error document inside an error's text.
fn s3_code(text: &str) -> Option<(String, String)> {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&close)?;
        Some(text[start..end].trim().to_owned())
    };
    let code = element("Code")?;
    Some((code, element("Message").unwrap_or_default()))
}

/// Collapses whitespace (newlines of XML bodies and error chains) into single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The output of a run on S3: throttled, ordered PUTs of the newest notebook (module docs).
#[derive(Debug)]
pub(crate) struct Uploader {
    url: S3Url,
    store: Arc<AmazonS3>,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The newest notebook not uploaded yet.
    latest: Option<Bytes>,
    /// The run is over: upload `latest` at once and stop.
    closed: bool,
    /// The first failed PUT; no PUT follows it.
    error: Option<Error>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Uploader {
    pub(crate) fn new(url: &str) -> Result<Uploader> {
        let url = S3Url::parse(url)?;
        let store = Arc::new(s3_store(&url.bucket)?);
        Ok(Uploader {
            url,
            store,
            shared: Arc::default(),
            task: None,
        })
    }

    /// A save while the run goes on. The first is PUT now; later ones are queued (the newest
    /// replaces an older one not yet uploaded). Fails if an earlier PUT failed.
    pub(crate) async fn save(&mut self, bytes: Bytes) -> Result<()> {
        if self.task.is_none() {
            put_with(&self.store, &self.url, bytes).await?;
            self.task = Some(tokio::spawn(upload_loop(
                self.url.clone(),
                Arc::clone(&self.store),
                Arc::clone(&self.shared),
            )));
            return Ok(());
        }
        self.offer(bytes)
    }

    /// [`Uploader::save`] without waiting (from the output callback, which cannot await); before
    /// the first save it only keeps the notebook for the next one.
    pub(crate) fn offer(&mut self, bytes: Bytes) -> Result<()> {
        let mut state = self.shared.lock();
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        state.latest = Some(bytes);
        drop(state);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The last save: PUT after the one in flight, and awaited.
    pub(crate) async fn finish(&mut self, bytes: Bytes) -> Result<()> {
        let Some(task) = self.task.take() else {
            return put_with(&self.store, &self.url, bytes).await;
        };
        {
            let mut state = self.shared.lock();
            state.latest = Some(bytes);
            state.closed = true;
        }
        self.shared.wake.notify_one();
        task.await.map_err(|e| Error::Internal(e.to_string()))?;
        match self.shared.lock().error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Uploader {
    /// Uploads the newest queued notebook, if any, and stops (a run that ends in an error).
    pub(crate) async fn flush(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Err(e) = task.await {
            tracing::warn!("{}: the upload task failed: {e}", self.url);
        }
    }
}

impl Drop for Uploader {
    /// A run that ended in an error: the newest queued state is still uploaded, then the task
    /// stops (it is not awaited).
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

async fn upload_loop(url: S3Url, store: Arc<AmazonS3>, shared: Arc<Shared>) {
    let mut last_put = Instant::now();
    loop {
        // Wait for a notebook to upload, at least SAVE_INTERVAL after the last PUT began
        // (unless the run is over).
        let next = loop {
            let (latest, closed) = {
                let mut state = shared.lock();
                (
                    (state.closed || last_put.elapsed() >= SAVE_INTERVAL)
                        .then(|| state.latest.take())
                        .flatten(),
                    state.closed,
                )
            };
            match (latest, closed) {
                (Some(bytes), _) => break Some(bytes),
                (None, true) => break None,
                (None, false) => {
                    let deadline = last_put + SAVE_INTERVAL;
                    tokio::select! {
                        () = shared.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline), if Instant::now() < deadline => {}
                    }
                }
            }
        };
        let Some(bytes) = next else {
            return;
        };
        last_put = Instant::now();
        if let Err(e) = put_with(&store, &url, bytes).await {
            tracing::warn!("{e}");
            shared.lock().error = Some(e);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls() {
        let url = S3Url::parse("s3://bucket/dir/in.ipynb").expect("parses");
        assert_eq!(url.bucket, "bucket");
        assert_eq!(url.key, "dir/in.ipynb");
        assert_eq!(url.to_string(), "s3://bucket/dir/in.ipynb");
        for bad in [
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "s3://bucket/dir/",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "http://bucket/key",
        ] {
            let e = S3Url::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with(bad), "{e}");
        }
    }

    #[test]
    fn arguments_pick_the_location() {
        assert_eq!(Input::from_arg("-"), Input::Stdin);
        assert_eq!(
            Input::from_arg("s3://b/k.ipynb"),
            Input::S3("s3://b/k.ipynb".into())
        );
        assert_eq!(
            Output::from_arg("out.ipynb"),
            Output::File("out.ipynb".into())
        );
        assert_eq!(Output::from_arg("-"), Output::Stdout);
    }

    #[test]
    fn error_documents_become_one_line() {
        let text = "Generic S3 error: Error performing GET http://x/b/k in 1ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            s3_code(text),
            Some((
                "NoSuchBucket".to_owned(),
                "The specified bucket does not exist".to_owned()
            ))
        );
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
