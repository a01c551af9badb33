//! `TF_CONFIG`, byte for byte as Training Operator v1 writes it: Go's `encoding/json` of
//! `{"cluster": {role: ["host:port", ...]}, "task": {"type", "index"}, "environment": "cloud"}`
//! — struct fields in declaration order, map keys sorted, every role (chief, master, ps,
//! worker, evaluator) in `cluster` under its lowercase name. A job of exactly one replica is
//! not distributed and gets no `TF_CONFIG` (v1's `isDistributed`).

use std::collections::BTreeMap;

use crate::{AddressBook, Env, LaunchSpec, Result};

/// The variable's name.
pub(crate) const TF_CONFIG: &str = "TF_CONFIG";

pub(crate) fn env(spec: &LaunchSpec, book: &AddressBook, role: &str, index: u32) -> Result<Env> {
    let mut env = Env::new();
    if spec.total_replicas() == 1 {
        return Ok(env);
    }
    // BTreeMap<String, _> orders keys bytewise, as Go sorts map keys.
    let mut cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &spec.roles {
        let endpoints = (0..r.replicas)
            .map(|i| book.endpoint(&r.name, i))
            .collect::<Result<Vec<_>>>()?;
        cluster.insert(r.name.to_ascii_lowercase(), endpoints);
    }
    let mut json = String::from("{\"cluster\":{");
    for (n, (name, endpoints)) in cluster.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        go_string(&mut json, name);
        json.push_str(":[");
        for (k, e) in endpoints.iter().enumerate() {
            if k > 0 {
                json.push(',');
            }
            go_string(&mut json, e);
        }
        json.push(']');
    }
    json.push_str("},\"task\":{\"type\":");
    go_string(&mut json, &role.to_ascii_lowercase());
    json.push_str(&format!(",\"index\":{index}}},\"environment\":\"cloud\"}}"));
    env.set(TF_CONFIG, json);
    Ok(env)
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe: `<`, `>`, `&` and U+2028/9
/// escaped as `\u00XX`).
fn go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::go_string;

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut out = String::new();
        go_string(&mut out, "a\"b\\c<d>&\n\u{1}\u{2028}é");
        assert_eq!(out, r#""a\"b\\c\u003cd\u003e\u0026\n\u0001\u2028é""#);
    }
}
