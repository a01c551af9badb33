//! The notebook document (nbformat 4) as JSON: checked on load, multi-line fields joined into
//! strings while we work on it, written back as nbformat writes it (keys sorted, one-space
//! indent, multi-line strings split into lists of lines, transient keys stripped).
//! Unknown fields are kept as they are.

use serde_json::{Map, Value, json};

use crate::{Error, Result};

/// A parsed notebook; `cells()` and `metadata()` are guaranteed to exist with the right types.
#[derive(Debug, Clone)]
pub struct Notebook {
    root: Map<String, Value>,
}

const NON_TEXT_SPLIT_MIMES: [&str; 2] = ["image/svg+xml", "application/javascript"];

fn invalid(source: &str, why: impl Into<String>) -> Error {
    Error::InvalidNotebook {
        what: source.to_owned(),
        why: why.into(),
    }
}

impl Notebook {
    /// Parses and checks a notebook; `source` names it in errors.
    pub fn parse(text: &[u8], source: &str) -> Result<Notebook> {
        let value: Value = serde_json::from_slice(text).map_err(|e| {
            invalid(
                source,
                format!(
                    "not valid JSON: {} at line {} column {}",
                    json_error_kind(&e),
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let Value::Object(mut root) = value else {
            return Err(invalid(source, "the top level is not a JSON object"));
        };
        match root.get("nbformat").and_then(Value::as_i64) {
            Some(4) => {}
            Some(v) => {
                return Err(invalid(
                    source,
                    format!(
                        "nbformat {v} is not supported (only 4; convert it with `jupyter nbconvert --to notebook`)"
                    ),
                ));
            }
            None => return Err(invalid(source, "missing or non-integer `nbformat`")),
        }
        if !root.get("nbformat_minor").is_some_and(Value::is_i64) {
            return Err(invalid(source, "missing or non-integer `nbformat_minor`"));
        }
        match root.get("metadata") {
            Some(Value::Object(_)) => {}
            None => {
                root.insert("metadata".into(), json!({}));
            }
            Some(_) => return Err(invalid(source, "`metadata` is not an object")),
        }
        let Some(Value::Array(cells)) = root.get_mut("cells") else {
            return Err(invalid(source, "missing `cells` list"));
        };
        for (i, cell) in cells.iter_mut().enumerate() {
            check_cell(cell, i).map_err(|why| invalid(source, why))?;
        }
        Ok(Notebook { root })
    }

    pub fn cells(&self) -> &Vec<Value> {
        match self.root.get("cells") {
            Some(Value::Array(cells)) => cells,
            _ => unreachable!("checked in Notebook::parse"),
        }
    }

    pub fn cells_mut(&mut self) -> &mut Vec<Value> {
        match self.root.get_mut("cells") {
            Some(Value::Array(cells)) => cells,
            _ => unreachable!("checked in Notebook::parse"),
        }
    }

    pub fn metadata(&self) -> &Map<String, Value> {
        match self.root.get("metadata") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("checked in Notebook::parse"),
        }
    }

    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        match self.root.get_mut("metadata") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("checked in Notebook::parse"),
        }
    }

    /// `nbformat.v4.upgrade`: a 4.0–4.4 notebook becomes 4.5, every cell getting a fresh id.
    pub fn upgrade(&mut self) {
        let minor = self
            .root
            .get("nbformat_minor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if minor >= 5 {
            return;
        }
        for cell in self.cells_mut() {
            if let Value::Object(c) = cell {
                c.insert("id".into(), Value::String(random_cell_id()));
            }
        }
        self.root.insert("nbformat_minor".into(), json!(5));
    }

    /// The document as nbformat writes it (no trailing newline, as papermill's writer).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut root = self.root.clone();
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            for key in ["orig_nbformat", "orig_nbformat_minor", "signature"] {
                meta.remove(key);
            }
        }
        if let Some(Value::Array(cells)) = root.get_mut("cells") {
            for cell in cells {
                split_cell_lines(cell);
            }
        }
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        // serde_json's default map is ordered by key, as nbformat's sort_keys=True.
        if serde::Serialize::serialize(&Value::Object(root), &mut ser).is_err() {
            unreachable!("serializing a serde_json::Value into a Vec cannot fail");
        }
        out
    }
}

fn json_error_kind(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Checks one cell and joins its multi-line fields; `i` is its 0-based index.
fn check_cell(cell: &mut Value, i: usize) -> std::result::Result<(), String> {
    let n = i + 1;
    let Value::Object(c) = cell else {
        return Err(format!("cell {n}: not a JSON object"));
    };
    let cell_type = match c.get("cell_type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(format!("cell {n}: `cell_type` is not a string")),
        None => return Err(format!("cell {n}: missing `cell_type`")),
    };
    if !matches!(cell_type.as_str(), "code" | "markdown" | "raw") {
        return Err(format!(
            "cell {n}: unknown cell_type `{cell_type}` (expected code, markdown or raw)"
        ));
    }
    match c.get_mut("source") {
        Some(source) => {
            *source =
                Value::String(join_lines(source).ok_or_else(|| {
                    format!("cell {n}: `source` is not a string or list of strings")
                })?);
        }
        None => return Err(format!("cell {n}: missing `source`")),
    }
    match c.get("metadata") {
        Some(Value::Object(_)) => {}
        None => {
            c.insert("metadata".into(), json!({}));
        }
        Some(_) => return Err(format!("cell {n}: `metadata` is not an object")),
    }
    if let Some(Value::Object(meta)) = c.get("metadata")
        && let Some(tags) = meta.get("tags")
        && !tags
            .as_array()
            .is_some_and(|t| t.iter().all(Value::is_string))
    {
        return Err(format!(
            "cell {n}: `metadata.tags` is not a list of strings"
        ));
    }
    if cell_type == "code" {
        match c.get_mut("outputs") {
            None => {
                c.insert("outputs".into(), json!([]));
            }
            Some(Value::Array(outputs)) => {
                for (j, output) in outputs.iter_mut().enumerate() {
                    check_output(output)
                        .map_err(|why| format!("cell {n}, output {}: {why}", j + 1))?;
                }
            }
            Some(_) => return Err(format!("cell {n}: `outputs` is not a list")),
        }
        if !c.contains_key("execution_count") {
            c.insert("execution_count".into(), Value::Null);
        }
    }
    Ok(())
}

fn check_output(output: &mut Value) -> std::result::Result<(), String> {
    let Value::Object(o) = output else {
        return Err("not a JSON object".to_owned());
    };
    let kind = o
        .get("output_type")
        .and_then(Value::as_str)
        .ok_or("missing `output_type`")?
        .to_owned();
    match kind.as_str() {
        "stream" => {
            if let Some(text) = o.get_mut("text") {
                *text = Value::String(join_lines(text).ok_or("`text` is not a string or list")?);
            }
        }
        "display_data" | "execute_result" => {
            if let Some(Value::Object(data)) = o.get_mut("data") {
                rejoin_mimebundle(data);
            }
        }
        _ => {}
    }
    Ok(())
}

fn join_lines(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.as_str())
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat()),
        _ => None,
    }
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// nbformat's `_rejoin_mimebundle`.
pub(crate) fn rejoin_mimebundle(data: &mut Map<String, Value>) {
    for (key, value) in data.iter_mut() {
        if !is_json_mime(key)
            && let Value::Array(parts) = value
            && parts.iter().all(Value::is_string)
            && let Some(joined) = join_lines(value)
        {
            *value = Value::String(joined);
        }
    }
}

fn split_mimebundle(data: &mut Map<String, Value>) {
    for (key, value) in data.iter_mut() {
        if let Value::String(s) = value
            && (key.starts_with("text/") || NON_TEXT_SPLIT_MIMES.contains(&key.as_str()))
        {
            *value = split_lines(s);
        }
    }
}

/// nbformat's `split_lines` for one cell.
fn split_cell_lines(cell: &mut Value) {
    let Value::Object(c) = cell else { return };
    if let Some(Value::String(s)) = c.get("source") {
        let split = split_lines(s);
        c.insert("source".into(), split);
    }
    if let Some(Value::Object(attachments)) = c.get_mut("attachments") {
        for attachment in attachments.values_mut() {
            if let Value::Object(bundle) = attachment {
                split_mimebundle(bundle);
            }
        }
    }
    if c.get("cell_type").and_then(Value::as_str) != Some("code") {
        return;
    }
    if let Some(Value::Array(outputs)) = c.get_mut("outputs") {
        for output in outputs {
            let Value::Object(o) = output else { continue };
            match o.get("output_type").and_then(Value::as_str) {
                Some("execute_result" | "display_data") => {
                    if let Some(Value::Object(data)) = o.get_mut("data") {
                        split_mimebundle(data);
                    }
                }
                Some("stream") => {
                    if let Some(Value::String(text)) = o.get("text") {
                        let split = split_lines(text);
                        o.insert("text".into(), split);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Python's `str.splitlines(keepends=True)` as a JSON list.
fn split_lines(s: &str) -> Value {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => match chars.peek() {
                Some((_, '\n')) => {
                    chars.next();
                    i + 2
                }
                _ => i + 1,
            },
            '\n' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(Value::String(s[start..end].to_owned()));
        start = end;
    }
    if start < s.len() {
        lines.push(Value::String(s[start..].to_owned()));
    }
    Value::Array(lines)
}

/// nbformat's `random_cell_id`: eight hex digits.
pub fn random_cell_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// `nbformat.v4.new_code_cell(source)` (4.5, with an id).
pub fn new_code_cell(source: &str) -> Value {
    json!({
        "id": random_cell_id(),
        "cell_type": "code",
        "metadata": {},
        "execution_count": null,
        "source": source,
        "outputs": [],
    })
}

/// `nbformat.v4.new_markdown_cell(source)` (4.5, with an id).
pub fn new_markdown_cell(source: &str) -> Value {
    json!({
        "id": random_cell_id(),
        "cell_type": "markdown",
        "metadata": {},
        "source": source,
    })
}

/// The cell's tags (empty when it has none).
pub fn cell_tags(cell: &Value) -> Vec<&str> {
    cell.pointer("/metadata/tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_matches_python() {
        assert_eq!(
            split_lines("a\nb\r\nc\rd"),
            json!(["a\n", "b\r\n", "c\r", "d"])
        );
        assert_eq!(split_lines("x\n"), json!(["x\n"]));
        assert_eq!(split_lines(""), json!([]));
    }

    #[test]
    fn bad_notebooks_name_the_problem_and_the_cell() {
        let err = |text: &str| {
            Notebook::parse(text.as_bytes(), "in.ipynb")
                .expect_err("invalid")
                .to_string()
        };
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("not a JSON object"));
        assert!(err(r#"{"nbformat": 3, "nbformat_minor": 0}"#).contains("nbformat 3"));
        let e = err(
            r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
                {"cell_type": "markdown", "source": "", "metadata": {}},
                {"cell_type": "code", "source": 5, "metadata": {}}]}"#,
        );
        assert!(e.contains("cell 2") && e.contains("source"), "{e}");
    }

    #[test]
    fn writes_as_nbformat_does() {
        let nb = Notebook::parse(
            br#"{"nbformat": 4, "nbformat_minor": 4, "metadata": {"signature": "x"},
                "cells": [{"cell_type": "code", "source": ["a\n", "b"], "metadata": {},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n2\n"}],
                "execution_count": 1}]}"#,
            "t",
        )
        .expect("valid");
        let text = String::from_utf8(nb.to_json_bytes()).expect("utf-8");
        assert!(text.starts_with("{\n \"cells\": [\n  {\n   \"cell_type\": \"code\""));
        assert!(text.contains("\"text\": [\n      \"1\\n\",\n      \"2\\n\"\n     ]"));
        assert!(!text.contains("signature"));
    }
}
