//! The HTTP edge: routes, query parsing, response headers and the error format.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::contents::{self, Params};
use crate::render::{self, FilePreview, PageContext, notebook};
use crate::storage::Kind;
use crate::{Browser, Error, RelPath};

/// The browser's routes (see the crate docs). Mount it at [`crate::BrowserOptions::base_url`]:
/// `Router::new().nest("/notebooks", router(browser))` with `base_url = "/notebooks/"`.
pub fn router(browser: Browser) -> Router {
    Router::new()
        .route("/", any(home))
        .route("/api/contents", any(contents_api))
        .route("/api/contents/", any(contents_api))
        .route("/api/contents/{*path}", any(contents_api))
        .route("/files/{*path}", any(files))
        .route("/view", any(view))
        .route("/view/", any(view))
        .route("/view/{*path}", any(view))
        .fallback(no_route)
        .with_state(browser)
}

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The browser answers reads only: a 405 for any other method.
fn refuse_writes(method: &Method) -> Option<Response> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed: the notebook browser is read-only (GET and HEAD only)"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

/// The raw (still percent-encoded) rest of the URL path after `prefix`.
fn raw_rest<'a>(uri: &'a Uri, prefix: &str) -> &'a str {
    let rest = uri.path().strip_prefix(prefix).unwrap_or("");
    rest.strip_prefix('/').unwrap_or(rest)
}

fn query(q: QueryMap) -> Result<HashMap<String, String>, Error> {
    q.map(|Query(map)| map)
        .map_err(|e| Error::BadRequest(format!("invalid query string: {}", e.body_text())))
}

fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn log(e: &Error) {
    if e.status() >= 500 {
        tracing::error!(status = e.status(), "{e}");
    } else {
        tracing::debug!(status = e.status(), "{e}");
    }
}

/// `{"error": "..."}` with the status, as every mofang HTTP API answers errors.
fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = (status, body).into_response();
    set(&mut response, header::CONTENT_TYPE, "application/json");
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    response
}

fn api_error(e: &Error) -> Response {
    log(e);
    json_error(status_of(e), &e.to_string())
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

async fn no_route(method: Method, uri: Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!("no such route: {method} {}", uri.path()),
    )
}

async fn home(State(browser): State<Browser>, method: Method) -> Response {
    if let Some(r) = refuse_writes(&method) {
        return r;
    }
    let location = format!("{}view/", browser.options().base_url);
    let mut response = StatusCode::FOUND.into_response();
    set(&mut response, header::LOCATION, &location);
    response
}

async fn contents_api(
    State(browser): State<Browser>,
    method: Method,
    uri: Uri,
    q: QueryMap,
) -> Response {
    if let Some(r) = refuse_writes(&method) {
        return r;
    }
    let result = async {
        let path = RelPath::from_url(raw_rest(&uri, "/api/contents"))?;
        let q = query(q)?;
        let get = |k: &str| q.get(k).map(String::as_str);
        let params = Params::parse(get("type"), get("format"), get("content"), get("hash"))?;
        let model = contents::get(&browser, &path, params).await?;
        serde_json::to_string(&model)
            .map_err(|e| Error::Internal(format!("cannot serialise the model of `{path}`: {e}")))
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = (StatusCode::OK, body).into_response();
            set(&mut response, header::CONTENT_TYPE, "application/json");
            set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
            response
        }
        Err(e) => api_error(&e),
    }
}

/// Content-Security-Policy of raw files: a sandbox without scripts, so an HTML or SVG file
/// opened from `/files/` cannot run code in the browser's origin.
const FILES_CSP: &str = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'";

async fn files(State(browser): State<Browser>, method: Method, uri: Uri, q: QueryMap) -> Response {
    if let Some(r) = refuse_writes(&method) {
        return r;
    }
    let result = async {
        let path = RelPath::from_url(raw_rest(&uri, "/files"))?;
        let q = query(q)?;
        if contents::is_hidden(&path) {
            return Err(contents::not_found(&path));
        }
        let entry = browser.storage().stat(&path).await?;
        if entry.kind == Kind::Directory {
            return Err(Error::BadRequest(format!(
                "`{path}` is a directory; /files/ serves files"
            )));
        }
        let bytes = browser
            .storage()
            .read(&path, browser.options().max_file_bytes)
            .await?;
        let download = matches!(q.get("download").map(String::as_str), Some("1" | "true"));
        Ok((path, bytes, download))
    }
    .await;
    let (path, bytes, download) = match result {
        Ok(ok) => ok,
        Err(e) => return api_error(&e),
    };
    let name = path.name().to_owned();
    let content_type = raw_content_type(&name, &bytes);
    let mut response = Response::new(Body::from(bytes));
    set(&mut response, header::CONTENT_TYPE, &content_type);
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut response, header::CONTENT_SECURITY_POLICY, FILES_CSP);
    if download {
        let ascii: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        set(
            &mut response,
            header::CONTENT_DISPOSITION,
            &format!(
                "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
                crate::path::percent_encode(&name)
            ),
        );
    }
    response
}

/// The media type of a raw file: notebooks as jupyter_server's files handler sends them, known
/// extensions by [`contents::guess_mimetype`] (text types with `charset=utf-8` when the bytes
/// are UTF-8), anything else `text/plain` if it is UTF-8, else `application/octet-stream`.
fn raw_content_type(name: &str, bytes: &[u8]) -> String {
    let utf8 = std::str::from_utf8(bytes).is_ok();
    if name.ends_with(".ipynb") {
        return "application/x-ipynb+json".into();
    }
    match contents::guess_mimetype(name) {
        Some(m) if utf8 && (m.starts_with("text/") || m == "application/json") => {
            format!("{m}; charset=utf-8")
        }
        Some(m) => m.into(),
        None if utf8 => "text/plain; charset=utf-8".into(),
        None => "application/octet-stream".into(),
    }
}

/// The Content-Security-Policy of HTML pages: no scripts at all, unless a MathJax URL is
/// configured (then that origin and the one inline configuration script, by hash).
fn page_csp(browser: &Browser, inline_script: Option<&str>) -> String {
    let mut csp = String::from(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'self'",
    );
    if let (Some(url), Some(inline)) = (&browser.options().mathjax_url, inline_script) {
        let origin = url
            .find("://")
            .map(|i| {
                let after = &url[i + 3..];
                let end = after.find('/').map(|j| i + 3 + j).unwrap_or(url.len());
                &url[..end]
            })
            .unwrap_or(url.as_str());
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(inline));
        csp.push_str(&format!(
            "; script-src 'sha256-{hash}' {origin}; font-src {origin} data:; connect-src {origin}"
        ));
    }
    csp
}

fn html(browser: &Browser, status: StatusCode, page: String) -> Response {
    let csp = page_csp(browser, Some(render::MATHJAX_CONFIG));
    let mut response = (status, page).into_response();
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/html; charset=utf-8",
    );
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut response, header::CONTENT_SECURITY_POLICY, &csp);
    set(&mut response, header::REFERRER_POLICY, "no-referrer");
    response
}

/// The language a text file is highlighted as, from its extension.
fn file_language(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("py") => "python",
        Some("r") => "r",
        Some("jl") => "julia",
        Some("scala") => "scala",
        Some("sh" | "bash") => "bash",
        Some("js" | "mjs" | "ts") => "javascript",
        _ => "text",
    }
}

/// Text files up to this size are previewed inline.
const PREVIEW_BYTES: u64 = 4 * 1024 * 1024;

async fn view(State(browser): State<Browser>, method: Method, uri: Uri, q: QueryMap) -> Response {
    if let Some(r) = refuse_writes(&method) {
        return r;
    }
    let path = RelPath::from_url(raw_rest(&uri, "/view"));
    let shown_path = path.as_ref().map(Clone::clone).unwrap_or_default();
    let result = match path {
        Ok(path) => view_page(&browser, path, q).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(page) => html(&browser, StatusCode::OK, page),
        Err(e) => {
            log(&e);
            let ctx = PageContext {
                base_url: &browser.options().base_url,
                path: &shown_path,
                mathjax_url: None,
            };
            html(
                &browser,
                status_of(&e),
                render::error_page(&ctx, e.status(), &e.to_string()),
            )
        }
    }
}

async fn view_page(browser: &Browser, path: RelPath, q: QueryMap) -> Result<String, Error> {
    let q = query(q)?;
    let report = matches!(q.get("report").map(String::as_str), Some("1" | "true"));
    if contents::is_hidden(&path) {
        return Err(contents::not_found(&path));
    }
    let options = browser.options();
    let entry = browser.storage().stat(&path).await?;
    let ctx = PageContext {
        base_url: &options.base_url,
        path: &path,
        mathjax_url: None,
    };
    match entry.kind {
        Kind::Directory => {
            let children = contents::children(browser, &path).await?;
            let title = if path.is_root() {
                "/".to_owned()
            } else {
                path.to_string()
            };
            Ok(render::page(
                &ctx,
                &title,
                true,
                &render::directory(&ctx, &children),
            ))
        }
        Kind::File if path.name().ends_with(".ipynb") => {
            let bytes = browser
                .storage()
                .read(&path, options.max_file_bytes)
                .await?;
            let base_url = options.base_url.clone();
            let mathjax_url = options.mathjax_url.clone();
            // Parsing and rendering a large notebook is CPU work: off the async threads.
            tokio::task::spawn_blocking(move || {
                let nb = contents::read_notebook(&path, &bytes)?;
                let ctx = PageContext {
                    base_url: &base_url,
                    path: &path,
                    mathjax_url: mathjax_url.as_deref(),
                };
                let body = notebook::render(&nb, &ctx, notebook::NotebookView { report });
                Ok(render::page(&ctx, path.name(), false, &body))
            })
            .await
            .map_err(|e| Error::Internal(format!("rendering failed: {e}")))?
        }
        Kind::File => {
            let name = path.name();
            let size = entry.size.unwrap_or(0);
            let mime = contents::guess_mimetype(name).unwrap_or("");
            let body = if mime.starts_with("image/") {
                render::file(&ctx, FilePreview::Image)
            } else if size <= PREVIEW_BYTES {
                let bytes = browser.storage().read(&path, PREVIEW_BYTES).await?;
                match std::str::from_utf8(&bytes) {
                    Ok(text) => render::file(
                        &ctx,
                        FilePreview::Text {
                            text,
                            language: file_language(name),
                        },
                    ),
                    Err(_) => render::file(&ctx, FilePreview::Binary { size }),
                }
            } else {
                render::file(&ctx, FilePreview::Binary { size })
            };
            Ok(render::page(&ctx, name, false, &body))
        }
    }
}
