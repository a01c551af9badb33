//! Relative keys under the browser's root, parsed from raw (still percent-encoded) URL paths.
//!
//! A [`RelPath`] is the only way a request names something in storage, and it can only be built
//! by [`RelPath::from_url`] or [`RelPath::join`], which refuse everything that could leave the
//! root *before* any storage is touched: `.` and `..` segments (also when percent-encoded, e.g.
//! `%2e%2e`), a leading `/` (an absolute path), encoded separators (`%2F`, `%5C`) and
//! backslashes, NUL and other control characters. Symlinks are the storage's business
//! ([`crate::LocalDir`] resolves them and refuses targets outside the root).

use std::fmt;

use crate::Error;

/// A validated path relative to the root: zero or more non-empty segments, none of them `.` or
/// `..`, none containing `/`, `\` or a control character. The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath {
    segments: Vec<String>,
}

impl RelPath {
    /// The root.
    pub fn root() -> RelPath {
        RelPath::default()
    }

    /// Parses the raw, percent-encoded path of a URL (the part after the route's prefix, e.g.
    /// `a/b%20c.ipynb`). Empty segments from repeated or trailing slashes are dropped, as
    /// jupyter_server strips them; a leading slash is refused as an absolute path.
    pub fn from_url(raw: &str) -> Result<RelPath, Error> {
        if raw.starts_with('/') {
            return Err(Error::Forbidden(format!(
                "absolute paths are refused: `{}`",
                printable(raw)
            )));
        }
        let mut segments = Vec::new();
        for raw_segment in raw.split('/') {
            if raw_segment.is_empty() {
                continue;
            }
            let segment = percent_decode(raw_segment)?;
            check_segment(&segment)?;
            segments.push(segment);
        }
        Ok(RelPath { segments })
    }

    /// This path with one more segment (a name read from a directory listing).
    pub fn join(&self, name: &str) -> Result<RelPath, Error> {
        check_segment(name)?;
        let mut segments = self.segments.clone();
        segments.push(name.to_owned());
        Ok(RelPath { segments })
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The last segment; empty for the root.
    pub fn name(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or("")
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The parent directory; the root is its own parent.
    pub fn parent(&self) -> RelPath {
        let mut segments = self.segments.clone();
        segments.pop();
        RelPath { segments }
    }

    /// The path percent-encoded for a URL, segment by segment (`/` between segments).
    pub fn to_url(&self) -> String {
        self.segments
            .iter()
            .map(|s| percent_encode(s))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// `a/b/c`, the form jupyter_server's models use in `path`.
impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

fn check_segment(segment: &str) -> Result<(), Error> {
    let shown = printable(segment);
    if segment.is_empty() {
        return Err(Error::Forbidden("empty path segment".into()));
    }
    if segment == "." || segment == ".." {
        return Err(Error::Forbidden(format!(
            "`{shown}` segments are refused (path traversal)"
        )));
    }
    if segment.contains('/') || segment.contains('\\') {
        return Err(Error::Forbidden(format!(
            "path separators inside a segment are refused: `{shown}`"
        )));
    }
    if segment.chars().any(char::is_control) {
        return Err(Error::Forbidden(format!(
            "control characters (NUL, ...) in paths are refused: `{shown}`"
        )));
    }
    Ok(())
}

/// Control characters shown escaped, so a hostile name cannot forge log lines or messages.
fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

fn percent_decode(raw: &str) -> Result<String, Error> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(h, 16).ok()
            });
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    return Err(Error::BadRequest(format!(
                        "invalid percent-encoding in path segment `{}`",
                        printable(raw)
                    )));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::BadRequest(format!(
            "path segment `{}` is not UTF-8 once decoded",
            printable(raw)
        ))
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(raw: &str) -> bool {
        matches!(RelPath::from_url(raw), Err(Error::Forbidden(_)))
    }

    #[test]
    fn parses_and_round_trips() {
        let p = RelPath::from_url("a//b%20c/d.ipynb/").expect("valid");
        assert_eq!(p.segments(), ["a", "b c", "d.ipynb"]);
        assert_eq!(p.to_string(), "a/b c/d.ipynb");
        assert_eq!(p.to_url(), "a/b%20c/d.ipynb");
        assert_eq!(p.name(), "d.ipynb");
        assert_eq!(p.parent().to_string(), "a/b c");
        assert!(RelPath::from_url("").expect("root").is_root());
        let odd = RelPath::from_url("%E4%B8%AD%3Cx%3E%23%3F").expect("valid");
        assert_eq!(odd.name(), "中<x>#?");
        assert_eq!(RelPath::from_url(&odd.to_url()).expect("valid"), odd);
    }

    #[test]
    fn refuses_traversal_in_every_spelling() {
        for raw in [
            "..",
            "a/../..",
            "a/./b",
            "%2e%2e",
            "%2E%2E/x",
            ".%2e",
            "a/%2e",
            "/etc/passwd",
            "%2Fetc%2Fpasswd",
            "a%2F..%2F..",
            "..%5C..",
            "a\\b",
            "a%00b",
            "a%0Ab",
        ] {
            assert!(forbidden(raw), "{raw} must be refused");
        }
    }

    #[test]
    fn bad_encoding_is_a_bad_request() {
        for raw in ["%", "%zz", "a%2", "%FF%FE"] {
            assert!(
                matches!(RelPath::from_url(raw), Err(Error::BadRequest(_))),
                "{raw}"
            );
        }
    }

    #[test]
    fn join_refuses_what_from_url_refuses() {
        let root = RelPath::root();
        assert!(root.join("x.ipynb").is_ok());
        for name in ["..", ".", "a/b", "", "a\0b"] {
            assert!(root.join(name).is_err(), "{name:?}");
        }
    }
}
