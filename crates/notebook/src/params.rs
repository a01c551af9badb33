//! Parameter values as papermill sees them: the types its translators know (None, bool, int,
//! float, str, list, dict), in insertion order, read from `-p` (typed), `-r` (raw), YAML and
//! base64-encoded YAML.

use base64::Engine as _;

use crate::{Error, Result};

/// One parameter value (a Python object of one of the types papermill's translators render).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// A mapping in insertion order; YAML keys need not be strings.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// Python's `str(value)`, as papermill's `translate_raw_str` and path formatting use it.
    pub fn python_str(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => other.python_repr(),
        }
    }

    /// Python's `repr(value)`.
    pub fn python_repr(&self) -> String {
        match self {
            Value::None => "None".to_owned(),
            Value::Bool(true) => "True".to_owned(),
            Value::Bool(false) => "False".to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => python_float_repr(*f),
            Value::Str(s) => python_str_repr(s),
            Value::List(items) => {
                let inner: Vec<String> = items.iter().map(Value::python_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Value::Dict(pairs) => {
                let inner: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.python_repr(), v.python_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }

    /// The value as `json.dumps` writes it into `metadata.papermill.parameters` (dict keys become
    /// strings as Python's json module makes them; NaN and infinities, which JSON cannot hold,
    /// become `null`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Dict(pairs) => J::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.json_key(), v.to_json()))
                    .collect(),
            ),
        }
    }

    fn json_key(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::None => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Float(f) if f.is_nan() => "NaN".to_owned(),
            Value::Float(f) if f.is_infinite() => {
                if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
            }
            other => other.python_repr(),
        }
    }

    /// Converts a YAML document's value (papermill reads `-y`, `-f` and `-b` with PyYAML's safe
    /// loader, dates left as strings).
    pub fn from_yaml(value: &serde_yaml::Value) -> Result<Value, String> {
        use serde_yaml::Value as Y;
        Ok(match value {
            Y::Null => Value::None,
            Y::Bool(b) => Value::Bool(*b),
            Y::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if n.is_u64() {
                    return Err(format!("integer {n} is larger than 64 bits"));
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Y::String(s) => Value::Str(s.clone()),
            Y::Sequence(items) => Value::List(
                items
                    .iter()
                    .map(Value::from_yaml)
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(map) => Value::Dict(
                map.iter()
                    .map(|(k, v)| Ok((Value::from_yaml(k)?, Value::from_yaml(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Y::Tagged(tagged) => Value::from_yaml(&tagged.value)?,
        })
    }
}

/// Parameters by name, in the order papermill's dict keeps them: a name keeps the place where
/// it was first set, a later source replaces its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    entries: Vec<(String, Value)>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// `dict[name] = value`.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `dict.update(yaml.load(text) or {})`; `source` names the flag or file in errors.
    pub fn update_from_yaml(&mut self, text: &str, source: &str) -> Result<()> {
        let invalid = |why: String| Error::InvalidParameters {
            what: source.to_owned(),
            why,
        };
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| invalid(format!("not valid YAML: {e}")))?;
        match doc {
            serde_yaml::Value::Null => Ok(()),
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in &map {
                    let name = match Value::from_yaml(k).map_err(&invalid)? {
                        Value::Str(s) => s,
                        other => other.python_str(),
                    };
                    let value =
                        Value::from_yaml(v).map_err(|why| invalid(format!("{name}: {why}")))?;
                    self.set(&name, value);
                }
                Ok(())
            }
            _ => Err(invalid(
                "expected a mapping of parameter names to values".to_owned(),
            )),
        }
    }

    /// `-b`: base64-encoded YAML.
    pub fn update_from_base64(&mut self, encoded: &str) -> Result<()> {
        let source = "-b/--parameters_base64";
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| Error::InvalidParameters {
                what: source.to_owned(),
                why: format!("not valid base64: {e}"),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| Error::InvalidParameters {
            what: source.to_owned(),
            why: "the decoded YAML is not UTF-8".to_owned(),
        })?;
        self.update_from_yaml(&text, source)
    }

    /// The parameters as `metadata.papermill.parameters`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        )
    }
}

/// papermill's `_resolve_type` for `-p NAME VALUE`: `True`, `False`, `None`, then whatever
/// Python's `int()` accepts, then `float()`, else the string itself.
pub fn resolve_type(text: &str) -> Value {
    match text {
        "True" => Value::Bool(true),
        "False" => Value::Bool(false),
        "None" => Value::None,
        _ => {
            if let Some(i) = python_int(text) {
                Value::Int(i)
            } else if let Some(f) = python_float(text) {
                Value::Float(f)
            } else {
                Value::Str(text.to_owned())
            }
        }
    }
}

/// Digits with single underscores between them, as Python's numeric literals allow.
fn digits_with_underscores(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Python's `int(text)` (base 10); `None` when Python would raise or the value needs more than
/// 64 bits.
fn python_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if !digits_with_underscores(digits) {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let signed = if negative { format!("-{clean}") } else { clean };
    signed.parse().ok()
}

/// Python's `float(text)`.
fn python_float(text: &str) -> Option<f64> {
    let t = text.trim();
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return t.to_ascii_lowercase().parse().ok();
    }
    let (mantissa, exponent) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..])),
        None => (lower.as_str(), None),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let int_ok = int_part.is_empty() || digits_with_underscores(int_part);
    let frac_ok = match frac_part {
        None => true,
        Some(f) => f.is_empty() || digits_with_underscores(f),
    };
    let has_digits = !int_part.is_empty() || frac_part.is_some_and(|f| !f.is_empty());
    let exp_ok = match exponent {
        None => true,
        Some(e) => digits_with_underscores(e.strip_prefix(['-', '+']).unwrap_or(e)),
    };
    if !(int_ok && frac_ok && has_digits && exp_ok) {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional for decimal
/// exponents -4..16, else scientific with at least two exponent digits.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Rust's `{:e}` prints the same shortest round-trip digits, as d.ddde<exp>.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if exp + 1 >= n {
        let zeros = "0".repeat((exp + 1 - n) as usize);
        format!("{sign}{digits}{zeros}.0")
    } else {
        let point = (exp + 1) as usize;
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_type_follows_python_casts() {
        assert_eq!(resolve_type("True"), Value::Bool(true));
        assert_eq!(resolve_type("None"), Value::None);
        assert_eq!(resolve_type("true"), Value::Str("true".into()));
        assert_eq!(resolve_type(" 42 "), Value::Int(42));
        assert_eq!(resolve_type("-1_000"), Value::Int(-1000));
        assert_eq!(resolve_type("007"), Value::Int(7));
        assert_eq!(resolve_type("1__0"), Value::Str("1__0".into()));
        assert_eq!(resolve_type("1.5"), Value::Float(1.5));
        assert_eq!(resolve_type(".5"), Value::Float(0.5));
        assert_eq!(resolve_type("5."), Value::Float(5.0));
        assert_eq!(resolve_type("1e3"), Value::Float(1000.0));
        assert_eq!(resolve_type("-Infinity"), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(resolve_type("nan"), Value::Float(f) if f.is_nan()));
        assert_eq!(resolve_type("0x10"), Value::Str("0x10".into()));
        assert_eq!(resolve_type("1e"), Value::Str("1e".into()));
        assert_eq!(resolve_type("."), Value::Str(".".into()));
        assert_eq!(resolve_type(""), Value::Str("".into()));
    }

    #[test]
    fn float_repr_matches_python() {
        for (f, want) in [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn later_sets_keep_first_position() {
        let mut p = Params::new();
        p.set("a", Value::Int(1));
        p.set("b", Value::Int(2));
        p.set("a", Value::Int(3));
        let names: Vec<&str> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p.get("a"), Some(&Value::Int(3)));
    }

    #[test]
    fn yaml_keeps_order_and_rejects_non_mappings() {
        let mut p = Params::new();
        p.update_from_yaml("z: 1\na: [1, x, null]\nm: {k: 2.5}", "-y")
            .expect("valid yaml");
        let names: Vec<&str> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["z", "a", "m"]);
        assert!(p.update_from_yaml("[1, 2]", "-y").is_err());
        assert!(p.update_from_yaml("a: [", "-y").is_err());
        assert!(p.update_from_base64("!!!").is_err());
    }
}
