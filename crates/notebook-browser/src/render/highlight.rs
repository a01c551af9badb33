//! Syntax highlighting of code cells: a small tokenizer per kernel language producing escaped
//! HTML with `<span class>`es (`k` keyword, `kc` constant, `nb` builtin, `nf` defined name,
//! `s` string, `c` comment, `n` number, `d` decorator, `m` IPython magic or shell escape).
//!
//! It colours, it does not parse: Python (and IPython's `%magic`/`!shell` lines) is covered
//! closely; R, Julia, Scala, bash and JavaScript share the same engine with their own keyword,
//! comment and string rules; any other language is shown as escaped plain text.

use super::escape_into;

struct Lang {
    keywords: &'static [&'static str],
    constants: &'static [&'static str],
    builtins: &'static [&'static str],
    line_comments: &'static [&'static str],
    /// Python-style triple-quoted strings and string prefixes (`r"…"`, `f'…'`, `b"…"`).
    python_strings: bool,
    /// `@decorator` / annotations at the start of a line.
    decorators: bool,
    /// Words after which the next identifier is a definition (`def f`, `class C`).
    definers: &'static [&'static str],
    /// IPython magics (`%time`, `%%bash`) and shell escapes (`!ls`) at the start of a line.
    magics: bool,
    /// Characters that open a string.
    quotes: &'static [char],
}

const PYTHON: Lang = Lang {
    keywords: &[
        "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
        "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with",
        "yield", "match", "case",
    ],
    constants: &["True", "False", "None", "Ellipsis", "NotImplemented"],
    builtins: &[
        "abs",
        "all",
        "any",
        "bool",
        "bytes",
        "callable",
        "dict",
        "dir",
        "enumerate",
        "filter",
        "float",
        "format",
        "getattr",
        "hasattr",
        "hash",
        "id",
        "input",
        "int",
        "isinstance",
        "issubclass",
        "iter",
        "len",
        "list",
        "map",
        "max",
        "min",
        "next",
        "object",
        "open",
        "print",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "setattr",
        "slice",
        "sorted",
        "str",
        "sum",
        "super",
        "tuple",
        "type",
        "vars",
        "zip",
        "self",
        "cls",
        "Exception",
        "ValueError",
        "TypeError",
        "KeyError",
        "IndexError",
        "RuntimeError",
    ],
    line_comments: &["#"],
    python_strings: true,
    decorators: true,
    definers: &["def", "class"],
    magics: true,
    quotes: &['"', '\''],
};

const R: Lang = Lang {
    keywords: &[
        "if", "else", "repeat", "while", "function", "for", "in", "next", "break", "return",
        "library", "require",
    ],
    constants: &["TRUE", "FALSE", "NULL", "NA", "Inf", "NaN", "T", "F"],
    builtins: &[
        "c",
        "list",
        "print",
        "paste",
        "data.frame",
        "length",
        "sum",
        "mean",
    ],
    line_comments: &["#"],
    python_strings: false,
    decorators: false,
    definers: &[],
    magics: false,
    quotes: &['"', '\''],
};

const JULIA: Lang = Lang {
    keywords: &[
        "function", "end", "if", "elseif", "else", "for", "while", "in", "return", "begin", "let",
        "local", "global", "const", "struct", "mutable", "module", "using", "import", "export",
        "try", "catch", "finally", "do", "macro", "quote", "break", "continue",
    ],
    constants: &["true", "false", "nothing", "missing", "Inf", "NaN"],
    builtins: &[
        "println", "print", "length", "push!", "Int", "Float64", "String", "Vector",
    ],
    line_comments: &["#"],
    python_strings: true,
    decorators: true,
    definers: &["function", "struct", "macro"],
    magics: false,
    quotes: &['"'],
};

const SCALA: Lang = Lang {
    keywords: &[
        "abstract",
        "case",
        "catch",
        "class",
        "def",
        "do",
        "else",
        "extends",
        "final",
        "finally",
        "for",
        "if",
        "implicit",
        "import",
        "lazy",
        "match",
        "new",
        "object",
        "override",
        "package",
        "private",
        "protected",
        "return",
        "sealed",
        "trait",
        "try",
        "type",
        "val",
        "var",
        "while",
        "with",
        "yield",
    ],
    constants: &["true", "false", "null", "this", "super"],
    builtins: &[
        "println", "print", "List", "Map", "Seq", "Option", "Some", "None", "String",
    ],
    line_comments: &["//"],
    python_strings: false,
    decorators: true,
    definers: &["def", "class", "object", "trait"],
    magics: false,
    quotes: &['"'],
};

const BASH: Lang = Lang {
    keywords: &[
        "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
        "in", "function", "return", "local", "export", "select",
    ],
    constants: &["true", "false"],
    builtins: &[
        "echo", "cd", "printf", "read", "set", "unset", "source", "exit", "test",
    ],
    line_comments: &["#"],
    python_strings: false,
    decorators: false,
    definers: &["function"],
    magics: false,
    quotes: &['"', '\''],
};

const JAVASCRIPT: Lang = Lang {
    keywords: &[
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "default",
        "delete",
        "do",
        "else",
        "export",
        "extends",
        "finally",
        "for",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "let",
        "new",
        "of",
        "return",
        "switch",
        "throw",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "yield",
    ],
    constants: &[
        "true",
        "false",
        "null",
        "undefined",
        "this",
        "NaN",
        "Infinity",
    ],
    builtins: &[
        "console", "Math", "JSON", "Array", "Object", "String", "Number", "Promise",
    ],
    line_comments: &["//"],
    python_strings: false,
    decorators: false,
    definers: &["function", "class"],
    magics: false,
    quotes: &['"', '\'', '`'],
};

fn lang(name: &str) -> Option<&'static Lang> {
    match name.to_ascii_lowercase().as_str() {
        "python" | "python3" | "python2" | "ipython" | "ipython3" | "py" => Some(&PYTHON),
        "r" => Some(&R),
        "julia" => Some(&JULIA),
        "scala" => Some(&SCALA),
        "bash" | "sh" | "shell" | "zsh" => Some(&BASH),
        "javascript" | "js" | "typescript" | "ts" | "node" => Some(&JAVASCRIPT),
        _ => None,
    }
}

/// `code` as escaped HTML, coloured when `language` is one this module knows.
pub fn highlight(code: &str, language: &str) -> String {
    let mut out = String::with_capacity(code.len() * 2);
    match lang(language) {
        Some(lang) => Tokenizer::new(code, lang).run(&mut out),
        None => escape_into(&mut out, code),
    }
    out
}

struct Tokenizer<'a> {
    chars: Vec<char>,
    pos: usize,
    lang: &'a Lang,
    /// The last word was a definer (`def`), so the next identifier is a definition.
    defining: bool,
}

impl<'a> Tokenizer<'a> {
    fn new(code: &str, lang: &'a Lang) -> Self {
        Tokenizer {
            chars: code.chars().collect(),
            pos: 0,
            lang,
            defining: false,
        }
    }

    fn peek(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.peek(i) == Some(c))
    }

    fn at_line_start(&self) -> bool {
        self.chars[..self.pos]
            .iter()
            .rev()
            .take_while(|c| **c != '\n')
            .all(|c| c.is_whitespace())
    }

    fn emit(&self, out: &mut String, class: &str, from: usize) {
        let text: String = self.chars[from..self.pos].iter().collect();
        out.push_str("<span class=\"");
        out.push_str(class);
        out.push_str("\">");
        escape_into(out, &text);
        out.push_str("</span>");
    }

    fn run(mut self, out: &mut String) {
        while let Some(c) = self.peek(0) {
            let start = self.pos;
            if self.lang.magics && self.at_line_start() && (c == '%' || c == '!') {
                self.skip_to_line_end();
                self.emit(out, "m", start);
            } else if self.lang.line_comments.iter().any(|p| self.starts_with(p)) {
                self.skip_to_line_end();
                self.emit(out, "c", start);
            } else if self.lang.decorators && c == '@' && self.at_line_start() {
                self.pos += 1;
                while self
                    .peek(0)
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                {
                    self.pos += 1;
                }
                self.emit(out, "d", start);
            } else if let Some(len) = self.string_start() {
                self.pos += len;
                self.string_body(len);
                self.emit(out, "s", start);
            } else if c.is_ascii_digit()
                || (c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
            {
                self.number(start);
                self.emit(out, "n", start);
            } else if c.is_alphabetic() || c == '_' {
                while self
                    .peek(0)
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '!')
                {
                    if self.peek(0) == Some('!') && !std::ptr::eq(self.lang, &JULIA) {
                        break;
                    }
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                self.word(out, &word, start);
            } else {
                self.pos += 1;
                let mut buf = [0u8; 4];
                escape_into(out, c.encode_utf8(&mut buf));
            }
        }
    }

    fn word(&mut self, out: &mut String, word: &str, start: usize) {
        if self.defining {
            self.defining = false;
            self.emit(out, "nf", start);
        } else if self.lang.keywords.contains(&word) {
            self.defining = self.lang.definers.contains(&word);
            self.emit(out, "k", start);
        } else if self.lang.constants.contains(&word) {
            self.emit(out, "kc", start);
        } else if self.lang.builtins.contains(&word) {
            self.emit(out, "nb", start);
        } else {
            escape_into(out, word);
        }
    }

    fn skip_to_line_end(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.pos += 1;
        }
    }

    /// The length of a string opener here (prefix and quotes), if one starts here.
    fn string_start(&self) -> Option<usize> {
        let mut prefix = 0;
        if self.lang.python_strings {
            while prefix < 2
                && self
                    .peek(prefix)
                    .is_some_and(|c| matches!(c.to_ascii_lowercase(), 'r' | 'b' | 'u' | 'f'))
            {
                prefix += 1;
            }
            // A prefix only counts right before a quote and not inside a longer word.
            if prefix > 0 {
                let before = self.pos.checked_sub(1).map(|i| self.chars[i]);
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    return None;
                }
            }
        }
        let quote = self.peek(prefix)?;
        if !self.lang.quotes.contains(&quote) {
            return None;
        }
        if self.lang.python_strings
            && self.peek(prefix + 1) == Some(quote)
            && self.peek(prefix + 2) == Some(quote)
        {
            return Some(prefix + 3);
        }
        Some(prefix + 1)
    }

    /// Consumes a string's body up to and including its closing quote(s).
    fn string_body(&mut self, opener_len: usize) {
        let quote = self.chars[self.pos - 1];
        let triple = opener_len >= 3
            && self.pos >= 3
            && self.chars[self.pos - 3..self.pos]
                .iter()
                .all(|c| *c == quote);
        let multi_line = triple || quote == '`' || !self.lang.python_strings;
        while let Some(c) = self.peek(0) {
            if c == '\\' {
                self.pos += 2.min(self.chars.len() - self.pos);
                continue;
            }
            if c == '\n' && !multi_line {
                return;
            }
            if c == quote {
                if !triple {
                    self.pos += 1;
                    return;
                }
                if self.peek(1) == Some(quote) && self.peek(2) == Some(quote) {
                    self.pos += 3;
                    return;
                }
            }
            self.pos += 1;
        }
    }

    fn number(&mut self, start: usize) {
        while let Some(c) = self.peek(0) {
            let exponent_sign = (c == '+' || c == '-')
                && self.pos > 0
                && matches!(self.chars[self.pos - 1], 'e' | 'E')
                && !self.chars[start..self.pos]
                    .iter()
                    .any(|c| *c == 'x' || *c == 'X');
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exponent_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tokens() {
        let html = highlight("def f(x=1.5e-3):\n    return 'a<b' # done\n", "python");
        assert_eq!(
            html,
            "<span class=\"k\">def</span> <span class=\"nf\">f</span>(x=<span class=\"n\">1.5e-3</span>):\n    \
             <span class=\"k\">return</span> <span class=\"s\">&#39;a&lt;b&#39;</span> <span class=\"c\"># done</span>\n"
        );
    }

    #[test]
    fn python_strings_prefixes_triples_and_magics() {
        let html = highlight(
            "%time x = f\"{a}\" + r'''q\n'z'\n'''\n!ls\n@deco\nprint(None)",
            "python",
        );
        assert!(
            html.starts_with(
                "<span class=\"m\">%time x = f&quot;{a}&quot; + r&#39;&#39;&#39;q</span>"
            ),
            "{html}"
        );
        let html = highlight("x = rb'''a\n'b'\n''' # c", "python3");
        assert!(
            html.contains(
                "<span class=\"s\">rb&#39;&#39;&#39;a\n&#39;b&#39;\n&#39;&#39;&#39;</span>"
            ),
            "{html}"
        );
        assert!(html.ends_with("<span class=\"c\"># c</span>"));
        let html = highlight("!ls\n@deco\nprint(None)", "python");
        assert!(html.contains("<span class=\"m\">!ls</span>"));
        assert!(html.contains("<span class=\"d\">@deco</span>"));
        assert!(html.contains("<span class=\"nb\">print</span>(<span class=\"kc\">None</span>)"));
        // An identifier ending in a prefix letter is not a string prefix.
        let html = highlight("bar'x'", "python");
        assert_eq!(html, "bar<span class=\"s\">&#39;x&#39;</span>");
    }

    #[test]
    fn hostile_code_is_escaped_and_unknown_languages_are_plain() {
        let code = "</code></pre><script>alert(1)</script>";
        for language in ["python", "r", "cobol"] {
            let html = highlight(code, language);
            assert!(!html.contains("<script"), "{language}: {html}");
            assert!(!html.contains("</pre>"), "{language}: {html}");
        }
        assert_eq!(highlight("a < b", "cobol"), "a &lt; b");
    }

    #[test]
    fn unterminated_strings_end_at_the_line_or_input() {
        let html = highlight("x = 'abc\ny = 2", "python");
        assert!(
            html.contains("<span class=\"s\">&#39;abc</span>\ny"),
            "{html}"
        );
        let html = highlight("'\\", "python");
        assert_eq!(html, "<span class=\"s\">&#39;\\</span>");
    }
}
