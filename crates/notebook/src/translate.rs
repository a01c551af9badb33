//! Parameter translators: the text of the `injected-parameters` cell for each kernel language,
//! character for character as papermill's `translators.py` writes it (without the optional
//! `black` reformatting papermill applies to Python when black happens to be installed).

use crate::params::{Params, Value, python_float_repr};
use crate::{Error, Result};

/// The languages papermill registers, by kernel name or language name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translator {
    Python,
    R,
    Scala,
    Julia,
    Matlab,
    CSharp,
    FSharp,
    Powershell,
    Bash,
}

impl Translator {
    fn registered(name: &str) -> Option<Translator> {
        Some(match name {
            "python" | "pysparkkernel" => Translator::Python,
            "R" | "sparkrkernel" => Translator::R,
            "scala" | "sparkkernel" => Translator::Scala,
            "julia" => Translator::Julia,
            "matlab" => Translator::Matlab,
            ".net-csharp" => Translator::CSharp,
            ".net-fsharp" => Translator::FSharp,
            ".net-powershell" => Translator::Powershell,
            "bash" => Translator::Bash,
            _ => return None,
        })
    }

    /// papermill's `find_translator`: the kernel name first, then the language.
    pub fn find(kernel_name: &str, language: &str) -> Result<Translator> {
        Self::registered(kernel_name)
            .or_else(|| Self::registered(language))
            .ok_or_else(|| Error::NoTranslator {
                kernel: kernel_name.to_owned(),
                language: language.to_owned(),
            })
    }

    /// `codify(parameters, comment)`: the whole cell source.
    pub fn codify(self, params: &Params, comment: &str) -> Result<String> {
        let mut content = format!("{}\n", self.comment(comment));
        for (name, value) in params.iter() {
            let text = self
                .translate(value)
                .map_err(|why| Error::InvalidParameters {
                    what: format!("parameter `{name}`"),
                    why,
                })?;
            content.push_str(&self.assign(name, &text));
            if self == Translator::Matlab {
                content.push(';');
            }
            content.push('\n');
        }
        Ok(content)
    }

    fn comment(self, text: &str) -> String {
        let c = match self {
            Translator::Scala | Translator::CSharp => format!("// {text}"),
            Translator::Matlab => format!("% {text}"),
            Translator::FSharp => format!("(* {text} *)"),
            _ => format!("# {text}"),
        };
        c.trim().to_owned()
    }

    fn assign(self, name: &str, value: &str) -> String {
        match self {
            Translator::R => format!("{} = {value}", name.trim_start_matches('_')),
            Translator::Scala => format!("val {name} = {value}"),
            Translator::CSharp => format!("var {name} = {value};"),
            Translator::FSharp => format!("let {name} = {value}"),
            Translator::Powershell => format!("${name} = {value}"),
            Translator::Bash => format!("{name}={value}"),
            _ => format!("{name} = {value}"),
        }
    }

    fn translate(self, value: &Value) -> Result<String, String> {
        Ok(match value {
            Value::None => match self {
                Translator::R => "NULL".to_owned(),
                Translator::Julia => "nothing".to_owned(),
                Translator::Matlab => "NaN".to_owned(),
                Translator::Powershell => "$Null".to_owned(),
                Translator::Bash => String::new(),
                Translator::CSharp => {
                    return Err("None cannot be translated for C# (as in papermill)".to_owned());
                }
                // Python, Scala and F#: the raw text of None.
                _ => "None".to_owned(),
            },
            Value::Str(s) => self.translate_str(s),
            Value::Bool(b) => match self {
                Translator::Python => if *b { "True" } else { "False" }.to_owned(),
                Translator::R => if *b { "TRUE" } else { "FALSE" }.to_owned(),
                Translator::Powershell => if *b { "$True" } else { "$False" }.to_owned(),
                _ => if *b { "true" } else { "false" }.to_owned(),
            },
            Value::Int(i) => match self {
                Translator::Scala | Translator::CSharp | Translator::FSharp
                    if *i > 2_147_483_647 || *i < -2_147_483_648 =>
                {
                    format!("{i}L")
                }
                _ => i.to_string(),
            },
            Value::Float(f) => match self {
                Translator::Python if !f.is_finite() => python_special_float(*f).to_owned(),
                Translator::Powershell if !f.is_finite() => powershell_special_float(*f).to_owned(),
                _ => python_float_repr(*f),
            },
            Value::List(items) => {
                let parts = items
                    .iter()
                    .map(|v| self.translate(v))
                    .collect::<Result<Vec<_>, _>>()?;
                match self {
                    Translator::Python | Translator::Julia => format!("[{}]", parts.join(", ")),
                    Translator::R => format!("list({})", parts.join(", ")),
                    Translator::Scala => format!("Seq({})", parts.join(", ")),
                    Translator::Matlab => format!("{{{}}}", parts.join(", ")),
                    Translator::CSharp => format!("new [] {{ {} }}", parts.join(", ")),
                    Translator::FSharp => format!("[ {} ]", parts.join("; ")),
                    Translator::Powershell => format!("@({})", parts.join(", ")),
                    Translator::Bash => format!("({})", parts.join(" ")),
                }
            }
            Value::Dict(pairs) => self.translate_dict(pairs)?,
        })
    }

    fn translate_dict(self, pairs: &[(Value, Value)]) -> Result<String, String> {
        let mut keys = Vec::with_capacity(pairs.len());
        let mut values = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            keys.push(self.translate_key(k));
            values.push(self.translate(v)?);
        }
        let joined = |sep: &str, op: &str| {
            keys.iter()
                .zip(&values)
                .map(|(k, v)| format!("{k}{op}{v}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        Ok(match self {
            Translator::Python => format!("{{{}}}", joined(", ", ": ")),
            Translator::R => format!("list({})", joined(", ", " = ")),
            Translator::Scala => format!("Map({})", joined(", ", " -> ")),
            Translator::Julia => format!("Dict({})", joined(", ", " => ")),
            Translator::Matlab => {
                let char_keys: Vec<String> =
                    pairs.iter().map(|(k, _)| matlab_char_array(k)).collect();
                format!(
                    "containers.Map({{{}}}, {{{}}})",
                    char_keys.join(", "),
                    values.join(", ")
                )
            }
            Translator::CSharp => {
                let kvps: Vec<String> = keys
                    .iter()
                    .zip(&values)
                    .map(|(k, v)| format!("{{ {k} , {v} }}"))
                    .collect();
                format!("new Dictionary<string,Object>{{ {} }}", kvps.join(", "))
            }
            Translator::FSharp => {
                let tuples: Vec<String> = keys
                    .iter()
                    .zip(&values)
                    .map(|(k, v)| format!("({k}, {v} :> IComparable)"))
                    .collect();
                format!("[ {} ] |> Map.ofList", tuples.join("; "))
            }
            Translator::Powershell => format!("@{{{}}}", joined("\n ", " = ")),
            Translator::Bash => {
                return Err("dicts cannot be translated for bash (as in papermill)".to_owned());
            }
        })
    }

    /// `translate_str(key)`: dict keys that are not strings are quoted as their `str()`.
    fn translate_key(self, key: &Value) -> String {
        match key {
            Value::Str(s) => self.translate_str(s),
            other => match self {
                Translator::Bash => shell_quote(&other.python_str()),
                _ => format!("\"{}\"", other.python_str()),
            },
        }
    }

    fn translate_str(self, s: &str) -> String {
        match self {
            Translator::Bash => shell_quote(s),
            Translator::Matlab => format!("\"{}\"", unicode_escape(s).replace('"', "\"\"")),
            Translator::Powershell => format!("\"{}\"", unicode_escape(s).replace('"', "`\"")),
            _ => format!("\"{}\"", unicode_escape(s).replace('"', "\\\"")),
        }
    }
}

fn python_special_float(f: f64) -> &'static str {
    if f.is_nan() {
        "float('nan')"
    } else if f < 0.0 {
        "float('-inf')"
    } else {
        "float('inf')"
    }
}

fn powershell_special_float(f: f64) -> &'static str {
    if f.is_nan() {
        "[double]::NaN"
    } else if f < 0.0 {
        "[double]::NegativeInfinity"
    } else {
        "[double]::PositiveInfinity"
    }
}

fn matlab_char_array(key: &Value) -> String {
    match key {
        Value::Str(s) => format!("'{}'", unicode_escape(s).replace('\'', "''")),
        other => format!("'{}'", other.python_str()),
    }
}

/// Python's `s.encode('unicode_escape').decode('utf-8')`.
fn unicode_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let code = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if code < 0x20 || (0x7f..0x100).contains(&code) => {
                out.push_str(&format!("\\x{code:02x}"));
            }
            _ if code >= 0x10000 => out.push_str(&format!("\\U{code:08x}")),
            _ if code >= 0x100 => out.push_str(&format!("\\u{code:04x}")),
            _ => out.push(c),
        }
    }
    out
}

/// Python's `shlex.quote`.
fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        let mut p = Params::new();
        p.set("msg", Value::Str("it's \"quoted\"\n\tü€😀".into()));
        p.set("n", Value::Int(3_000_000_000));
        p.set("x", Value::Float(0.00001));
        p.set("flag", Value::Bool(true));
        p.set("nothing", Value::None);
        p.set(
            "items",
            Value::List(vec![Value::Int(1), Value::Str("a b".into())]),
        );
        p
    }

    #[test]
    fn python_cell_text() {
        let mut p = params();
        p.set(
            "d",
            Value::Dict(vec![
                (Value::Str("k".into()), Value::Float(f64::INFINITY)),
                (Value::Int(2), Value::None),
            ]),
        );
        let got = Translator::find("python3", "python")
            .expect("python is registered")
            .codify(&p, "Parameters")
            .expect("translatable");
        assert_eq!(
            got,
            "# Parameters\nmsg = \"it's \\\"quoted\\\"\\n\\t\\xfc\\u20ac\\U0001f600\"\nn = 3000000000\n\
             x = 1e-05\nflag = True\nnothing = None\nitems = [1, \"a b\"]\n\
             d = {\"k\": float('inf'), \"2\": None}\n"
        );
    }

    #[test]
    fn r_julia_scala_bash_cell_text() {
        let mut p = params();
        p.set("_private", Value::Int(1));
        let codify = |kernel: &str, language: &str| {
            Translator::find(kernel, language)
                .expect("registered")
                .codify(&p, "Parameters")
                .expect("translatable")
        };
        assert_eq!(
            codify("ir", "R"),
            "# Parameters\nmsg = \"it's \\\"quoted\\\"\\n\\t\\xfc\\u20ac\\U0001f600\"\nn = 3000000000\n\
             x = 1e-05\nflag = TRUE\nnothing = NULL\nitems = list(1, \"a b\")\nprivate = 1\n"
        );
        assert_eq!(
            codify("julia-1.9", "julia"),
            "# Parameters\nmsg = \"it's \\\"quoted\\\"\\n\\t\\xfc\\u20ac\\U0001f600\"\nn = 3000000000\n\
             x = 1e-05\nflag = true\nnothing = nothing\nitems = [1, \"a b\"]\n_private = 1\n"
        );
        assert_eq!(
            codify("spylon", "scala"),
            "// Parameters\nval msg = \"it's \\\"quoted\\\"\\n\\t\\xfc\\u20ac\\U0001f600\"\nval n = 3000000000L\n\
             val x = 1e-05\nval flag = true\nval nothing = None\nval items = Seq(1, \"a b\")\nval _private = 1\n"
        );
        assert_eq!(
            codify("bash", "bash"),
            "# Parameters\nmsg='it'\"'\"'s \"quoted\"\n\tü€😀'\nn=3000000000\nx=1e-05\nflag=true\n\
             nothing=\nitems=(1 'a b')\n_private=1\n"
        );
    }

    #[test]
    fn unknown_language_and_untranslatable_values_are_errors() {
        assert!(Translator::find("cobol", "cobol").is_err());
        let mut p = Params::new();
        p.set(
            "d",
            Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))]),
        );
        assert!(Translator::Bash.codify(&p, "Parameters").is_err());
    }
}
