//! Jupyter's contents API models (`GET /api/contents/{path}`), field for field as
//! jupyter_server 2.x's `FileContentsManager.get` builds them (`services/contents/filemanager.py`
//! and `fileio.py`), and notebook normalisation as `nbformat.reads(as_version=4)` does it.

use std::time::SystemTime;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::storage::{Entry, Kind};
use crate::{Browser, Error, RelPath, Result};

/// The contents model, in jupyter_server's key order. It is the wire format of the API.
#[derive(Debug, Serialize)]
pub(crate) struct Model {
    pub name: String,
    pub path: String,
    pub last_modified: String,
    pub created: String,
    pub content: Option<Value>,
    pub format: Option<&'static str>,
    pub mimetype: Option<String>,
    pub size: Option<u64>,
    /// Always false: the browser never writes.
    pub writable: bool,
    pub hash: Option<String>,
    pub hash_algorithm: Option<&'static str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// The model type a client asked for (`?type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelType {
    Directory,
    File,
    Notebook,
}

/// The file-content encoding a client asked for (`?format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Base64,
}

/// Validated query parameters of `GET /api/contents/{path}`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub kind: Option<ModelType>,
    pub format: Option<Format>,
    pub content: bool,
    pub hash: bool,
}

impl Params {
    /// jupyter_server's rules: an unknown `type` falls back to `file`; `format` must be `text` or
    /// `base64`; `content` and `hash` must be `0` or `1` (defaults 1 and 0).
    pub fn parse(
        kind: Option<&str>,
        format: Option<&str>,
        content: Option<&str>,
        hash: Option<&str>,
    ) -> Result<Params> {
        let kind = match kind {
            None => None,
            Some("directory") => Some(ModelType::Directory),
            Some("notebook") => Some(ModelType::Notebook),
            Some(_) => Some(ModelType::File),
        };
        let format = match format {
            None => None,
            Some("text") => Some(Format::Text),
            Some("base64") => Some(Format::Base64),
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "format `{}` is invalid: expected text or base64",
                    other.escape_debug()
                )));
            }
        };
        let flag = |name: &str, value: Option<&str>, default: bool| match value {
            None => Ok(default),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(Error::BadRequest(format!(
                "{name} `{}` is invalid: expected 0 or 1",
                other.escape_debug()
            ))),
        };
        Ok(Params {
            kind,
            format,
            content: flag("content", content, true)?,
            hash: flag("hash", hash, false)?,
        })
    }
}

/// Hidden files and directories (a segment starting with `.`) are not served, as
/// jupyter_server's default `allow_hidden = False`.
pub(crate) fn is_hidden(path: &RelPath) -> bool {
    path.segments().iter().any(|s| s.starts_with('.'))
}

/// Names jupyter_server leaves out of listings by default (`ContentsManager.hide_globs`).
pub(crate) fn listed(name: &str) -> bool {
    !(name.starts_with('.')
        || name == "__pycache__"
        || name.ends_with(".pyc")
        || name.ends_with(".pyo")
        || name.ends_with('~'))
}

/// The model of `path`, as `FileContentsManager.get(path, content, type, format, require_hash)`.
pub(crate) async fn get(browser: &Browser, path: &RelPath, params: Params) -> Result<Model> {
    if is_hidden(path) {
        return Err(not_found(path));
    }
    let entry = browser.storage().stat(path).await?;
    match entry.kind {
        Kind::Directory => {
            if let Some(kind) = params.kind.filter(|k| *k != ModelType::Directory) {
                let kind = match kind {
                    ModelType::File => "file",
                    _ => "notebook",
                };
                return Err(Error::BadRequest(format!(
                    "`{path}` is a directory, not a {kind}"
                )));
            }
            directory_model(browser, &entry, params.content).await
        }
        Kind::File => {
            let notebook = params.kind == Some(ModelType::Notebook)
                || (params.kind.is_none() && path.name().ends_with(".ipynb"));
            if params.kind == Some(ModelType::Directory) {
                return Err(Error::BadRequest(format!("`{path}` is not a directory")));
            }
            if notebook {
                notebook_model(browser, &entry, params).await
            } else {
                file_model(browser, &entry, params).await
            }
        }
    }
}

pub(crate) fn not_found(path: &RelPath) -> Error {
    Error::NotFound(format!("file or directory `{path}` does not exist"))
}

fn base_model(entry: &Entry, kind: &'static str) -> Model {
    Model {
        name: entry.path.name().to_owned(),
        path: entry.path.to_string(),
        last_modified: iso8601(entry.modified),
        created: iso8601(entry.created),
        content: None,
        format: None,
        mimetype: None,
        size: entry.size,
        writable: false,
        hash: None,
        hash_algorithm: None,
        kind,
    }
}

/// The model of a child in a listing (no content), as `get(child, content=False)`.
pub(crate) fn child_model(entry: &Entry) -> Model {
    match entry.kind {
        Kind::Directory => base_model(entry, "directory"),
        Kind::File if entry.path.name().ends_with(".ipynb") => base_model(entry, "notebook"),
        Kind::File => {
            let mut model = base_model(entry, "file");
            model.mimetype = guess_mimetype(entry.path.name()).map(str::to_owned);
            model
        }
    }
}

/// The listable children of a directory, sorted by name (jupyter_server keeps `os.listdir`'s
/// order, which is arbitrary).
pub(crate) async fn children(browser: &Browser, path: &RelPath) -> Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = browser
        .storage()
        .list(path)
        .await?
        .into_iter()
        .filter(|e| listed(e.path.name()))
        .collect();
    entries.sort_by(|a, b| a.path.name().cmp(b.path.name()));
    Ok(entries)
}

async fn directory_model(browser: &Browser, entry: &Entry, content: bool) -> Result<Model> {
    let mut model = base_model(entry, "directory");
    model.size = None;
    if content {
        let children = children(browser, &entry.path).await?;
        let list = children
            .iter()
            .map(|child| serde_json::to_value(child_model(child)))
            .collect::<Result<Vec<Value>, _>>()
            .map_err(|e| Error::Internal(format!("cannot serialise a listing: {e}")))?;
        model.content = Some(Value::Array(list));
        model.format = Some("json");
    }
    Ok(model)
}

async fn file_model(browser: &Browser, entry: &Entry, params: Params) -> Result<Model> {
    let mut model = base_model(entry, "file");
    model.mimetype = guess_mimetype(entry.path.name()).map(str::to_owned);
    if !params.content && !params.hash {
        return Ok(model);
    }
    let bytes = browser
        .storage()
        .read(&entry.path, browser.options().max_file_bytes)
        .await?;
    if params.content {
        let (content, format) = match params.format {
            Some(Format::Text) => match std::str::from_utf8(&bytes) {
                Ok(text) => (text.to_owned(), Format::Text),
                Err(_) => {
                    return Err(Error::BadRequest(format!(
                        "`{}` is not UTF-8 encoded",
                        entry.path
                    )));
                }
            },
            Some(Format::Base64) => (encodebytes(&bytes), Format::Base64),
            None => match std::str::from_utf8(&bytes) {
                Ok(text) => (text.to_owned(), Format::Text),
                Err(_) => (encodebytes(&bytes), Format::Base64),
            },
        };
        if model.mimetype.is_none() {
            model.mimetype = Some(
                match format {
                    Format::Text => "text/plain",
                    Format::Base64 => "application/octet-stream",
                }
                .to_owned(),
            );
        }
        model.content = Some(Value::String(content));
        model.format = Some(match format {
            Format::Text => "text",
            Format::Base64 => "base64",
        });
    }
    if params.hash {
        set_hash(&mut model, &bytes);
    }
    Ok(model)
}

async fn notebook_model(browser: &Browser, entry: &Entry, params: Params) -> Result<Model> {
    let mut model = base_model(entry, "notebook");
    if !params.content && !params.hash {
        return Ok(model);
    }
    let bytes = browser
        .storage()
        .read(&entry.path, browser.options().max_file_bytes)
        .await?;
    if params.content {
        model.content = Some(read_notebook(&entry.path, &bytes)?);
        model.format = Some("json");
    }
    if params.hash {
        set_hash(&mut model, &bytes);
    }
    Ok(model)
}

fn set_hash(model: &mut Model, bytes: &[u8]) {
    let digest = Sha256::digest(bytes);
    model.hash = Some(digest.iter().map(|b| format!("{b:02x}")).collect());
    model.hash_algorithm = Some("sha256");
}

/// Python's `base64.encodebytes`: lines of 76 characters, each ending in `\n`.
fn encodebytes(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Parses a notebook file into nbformat 4 JSON as jupyter_server hands it out: multi-line
/// strings joined (`rejoin_lines`), transient keys stripped (`strip_transient`), missing cell
/// ids of nbformat ≥ 4.5 filled in (nbformat's validator does this), and every code cell marked
/// `metadata.trusted = false` (the notary's verdict for an unsigned notebook; this browser never
/// trusts outputs and sanitises them instead).
pub(crate) fn read_notebook(path: &RelPath, bytes: &[u8]) -> Result<Value> {
    let mut nb: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::BadRequest(format!("Unreadable Notebook: `{path}`: {e}")))?;
    let Some(root) = nb.as_object_mut() else {
        return Err(Error::BadRequest(format!(
            "Unreadable Notebook: `{path}`: not a JSON object"
        )));
    };
    match root.get("nbformat").and_then(Value::as_u64) {
        Some(4) => {}
        Some(v) => {
            return Err(Error::BadRequest(format!(
                "Unreadable Notebook: `{path}` is nbformat {v}; only nbformat 4 is supported"
            )));
        }
        None => {
            return Err(Error::BadRequest(format!(
                "Unreadable Notebook: `{path}` has no integer `nbformat`"
            )));
        }
    }
    let minor = root
        .get("nbformat_minor")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["orig_nbformat", "orig_nbformat_minor", "signature"] {
            meta.remove(key);
        }
    }
    let Some(cells) = root.get_mut("cells").and_then(Value::as_array_mut) else {
        return Err(Error::BadRequest(format!(
            "Unreadable Notebook: `{path}` has no `cells` list"
        )));
    };
    for (index, cell) in cells.iter_mut().enumerate() {
        let Some(cell) = cell.as_object_mut() else {
            return Err(Error::BadRequest(format!(
                "Unreadable Notebook: `{path}`: cell {index} is not an object"
            )));
        };
        normalise_cell(cell, minor);
    }
    Ok(nb)
}

fn normalise_cell(cell: &mut Map<String, Value>, minor: u64) {
    join_lines(cell.get_mut("source"));
    if let Some(attachments) = cell.get_mut("attachments").and_then(Value::as_object_mut) {
        for bundle in attachments.values_mut() {
            rejoin_bundle(bundle);
        }
    }
    let is_code = cell.get("cell_type").and_then(Value::as_str) == Some("code");
    if is_code && let Some(outputs) = cell.get_mut("outputs").and_then(Value::as_array_mut) {
        for output in outputs.iter_mut().filter_map(Value::as_object_mut) {
            match output.get("output_type").and_then(Value::as_str) {
                Some("execute_result" | "display_data") => {
                    if let Some(data) = output.get_mut("data") {
                        rejoin_bundle(data);
                    }
                }
                Some(_) => join_lines(output.get_mut("text")),
                None => {}
            }
        }
    }
    if minor >= 5 && !cell.contains_key("id") {
        let id = uuid::Uuid::new_v4().simple().to_string();
        cell.insert("id".into(), Value::String(id[..8].to_owned()));
    }
    let meta = cell
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.remove("trusted");
        if is_code {
            meta.insert("trusted".into(), Value::Bool(false));
        }
    }
}

/// A list of strings becomes their concatenation; anything else is left alone.
fn join_lines(value: Option<&mut Value>) {
    let Some(value) = value else { return };
    let Some(list) = value.as_array() else { return };
    if let Some(joined) = list
        .iter()
        .map(Value::as_str)
        .collect::<Option<Vec<&str>>>()
    {
        *value = Value::String(joined.concat());
    }
}

fn rejoin_bundle(bundle: &mut Value) {
    let Some(bundle) = bundle.as_object_mut() else {
        return;
    };
    for (mime, value) in bundle.iter_mut() {
        if !is_json_mime(mime) {
            join_lines(Some(value));
        }
    }
}

/// nbformat's `_is_json_mime`: `application/json` and `application/*+json` stay structured.
pub(crate) fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The media type of a file name, from its extension; `None` when unknown (as Python's
/// `mimetypes.guess_type`, whose answers this table follows for the types it lists).
pub(crate) fn guess_mimetype(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "txt" | "text" => "text/plain",
        "py" => "text/x-python",
        "md" | "markdown" => "text/markdown",
        "json" => "application/json",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "xml" => "application/xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "ico" => "image/vnd.microsoft.icon",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "bin" => "application/octet-stream",
        "tar" => "application/x-tar",
        "sh" => "text/x-sh",
        "tex" => "text/x-tex",
        "c" => "text/x-csrc",
        "h" => "text/x-chdr",
        "cpp" => "text/x-c++src",
        "java" => "text/x-java",
        "scala" => "text/x-scala",
        "sql" => "application/sql",
        "mp4" => "video/mp4",
        "wav" => "audio/x-wav",
        _ => return None,
    })
}

/// `2024-05-01T12:34:56.123456Z`, as jupyter_client's `json_default` prints an aware UTC
/// datetime (microseconds; no fraction when they are zero).
pub(crate) fn iso8601(time: SystemTime) -> String {
    let micros_total: i128 = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_nanos() as i128 + 500) / 1000,
        Err(e) => -((e.duration().as_nanos() as i128 + 500) / 1000),
    };
    let secs = micros_total.div_euclid(1_000_000);
    let micros = micros_total.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if micros == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{micros:06}Z")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso8601_matches_python() {
        // datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")
        let at = |s: u64, n: u32| iso8601(SystemTime::UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            at(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123457Z"
        );
        assert_eq!(at(4_102_444_799, 999_999_600), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn encodebytes_wraps_like_python() {
        assert_eq!(encodebytes(b""), "");
        assert_eq!(encodebytes(b"\x89PNG\x00\xff"), "iVBORwD/\n");
        let long = encodebytes(&[7u8; 100]);
        let lines: Vec<&str> = long.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 76);
    }

    #[test]
    fn params_follow_jupyter_server() {
        let p = Params::parse(Some("weird"), None, None, None).expect("valid");
        assert_eq!(p.kind, Some(ModelType::File));
        assert!(p.content && !p.hash);
        assert!(Params::parse(None, Some("json"), None, None).is_err());
        assert!(Params::parse(None, None, Some("2"), None).is_err());
        assert!(Params::parse(None, None, None, Some("yes")).is_err());
    }
}
