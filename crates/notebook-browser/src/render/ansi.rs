//! ANSI escape codes (tracebacks, coloured logs) → escaped HTML with coloured spans.
//!
//! SGR sequences (`ESC [ … m`) set bold, italic, underline, the 16 standard colours (as CSS
//! classes `ansi-red`, `ansi-bright-red`, `ansi-bg-…`), 256-colour and 24-bit colours (as inline
//! styles computed here, never copied from the input); every other escape sequence is dropped.
//! Carriage returns overwrite the line as a terminal would (progress bars), backspaces delete.

use super::escape_into;

const NAMES: [&str; 8] = [
    "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Named(u8),
    Rgb(u8, u8, u8),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    fg: Option<Colour>,
    bg: Option<Colour>,
    bold: bool,
    italic: bool,
    underline: bool,
}

impl Style {
    fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    fn open_tag(&self) -> String {
        let mut classes = Vec::new();
        let mut styles = Vec::new();
        for (colour, prefix, css) in [
            (self.fg, "ansi-", "color"),
            (self.bg, "ansi-bg-", "background-color"),
        ] {
            match colour {
                Some(Colour::Named(n)) if n < 8 => {
                    classes.push(format!("{prefix}{}", NAMES[n as usize]))
                }
                Some(Colour::Named(n)) => {
                    classes.push(format!("{prefix}bright-{}", NAMES[(n - 8) as usize]))
                }
                Some(Colour::Rgb(r, g, b)) => styles.push(format!("{css}:#{r:02x}{g:02x}{b:02x}")),
                None => {}
            }
        }
        if self.bold {
            classes.push("ansi-bold".into());
        }
        if self.italic {
            classes.push("ansi-italic".into());
        }
        if self.underline {
            classes.push("ansi-underline".into());
        }
        let mut tag = String::from("<span");
        if !classes.is_empty() {
            tag.push_str(&format!(" class=\"{}\"", classes.join(" ")));
        }
        if !styles.is_empty() {
            tag.push_str(&format!(" style=\"{}\"", styles.join(";")));
        }
        tag.push('>');
        tag
    }

    /// Applies one SGR parameter list.
    fn apply(&mut self, params: &[u16]) {
        let mut i = 0;
        if params.is_empty() {
            *self = Style::default();
        }
        while i < params.len() {
            match params[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => self.bold = false,
                23 => self.italic = false,
                24 => self.underline = false,
                p @ 30..=37 => self.fg = Some(Colour::Named((p - 30) as u8)),
                39 => self.fg = None,
                p @ 40..=47 => self.bg = Some(Colour::Named((p - 40) as u8)),
                49 => self.bg = None,
                p @ 90..=97 => self.fg = Some(Colour::Named((p - 90 + 8) as u8)),
                p @ 100..=107 => self.bg = Some(Colour::Named((p - 100 + 8) as u8)),
                p @ (38 | 48) => {
                    let (colour, used) = extended(&params[i + 1..]);
                    if p == 38 {
                        self.fg = colour.or(self.fg);
                    } else {
                        self.bg = colour.or(self.bg);
                    }
                    i += used;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `5;N` (256 colours) or `2;R;G;B`; returns the colour and how many parameters it used.
fn extended(rest: &[u16]) -> (Option<Colour>, usize) {
    match rest {
        [5, n, ..] => (Some(xterm256(*n)), 2),
        [2, r, g, b, ..] => (Some(Colour::Rgb(clamp(*r), clamp(*g), clamp(*b))), 4),
        _ => (None, rest.len()),
    }
}

fn clamp(v: u16) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn xterm256(n: u16) -> Colour {
    match n {
        0..=15 => Colour::Named(n as u8),
        16..=231 => {
            let n = n - 16;
            let level = |v: u16| if v == 0 { 0 } else { (55 + v * 40) as u8 };
            Colour::Rgb(level(n / 36), level(n / 6 % 6), level(n % 6))
        }
        232..=255 => {
            let v = (8 + (n - 232) * 10) as u8;
            Colour::Rgb(v, v, v)
        }
        _ => Colour::Named(7),
    }
}

/// Renders terminal text as escaped HTML (for inside a `<pre>`).
pub fn to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut style = Style::default();
    let mut open = false;
    for line in split_keep_newlines(text) {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, true),
            None => (line, false),
        };
        for (segment_style, segment) in styled_segments(&overwrite(body), &mut style) {
            if segment.is_empty() {
                continue;
            }
            if open {
                out.push_str("</span>");
                open = false;
            }
            if !segment_style.is_plain() {
                out.push_str(&segment_style.open_tag());
                open = true;
            }
            escape_into(&mut out, &segment);
        }
        if open {
            out.push_str("</span>");
            open = false;
        }
        if newline {
            out.push('\n');
        }
    }
    out
}

fn split_keep_newlines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
}

/// A terminal's view of one line: `\r` returns to the start and later characters overwrite
/// earlier ones, `\b` moves back one. Escape sequences are kept (they take no columns).
fn overwrite(line: &str) -> String {
    if !line.contains('\r') && !line.contains('\u{8}') {
        return line.to_owned();
    }
    // Cells: (escape sequences before the character, the character).
    let mut cells: Vec<(String, char)> = Vec::new();
    let mut cursor = 0usize;
    let mut pending = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => cursor = 0,
            '\u{8}' => cursor = cursor.saturating_sub(1),
            '\u{1b}' => {
                pending.push(c);
                while let Some(&n) = chars.peek() {
                    pending.push(n);
                    chars.next();
                    if n.is_ascii_alphabetic() && n != '[' {
                        break;
                    }
                }
            }
            c => {
                let cell = (std::mem::take(&mut pending), c);
                if cursor < cells.len() {
                    cells[cursor] = cell;
                } else {
                    cells.push(cell);
                }
                cursor += 1;
            }
        }
    }
    let mut out: String = cells
        .into_iter()
        .flat_map(|(esc, c)| esc.chars().chain(std::iter::once(c)).collect::<Vec<_>>())
        .collect();
    out.push_str(&pending);
    out
}

/// Splits a line into runs of text with their style, consuming escape sequences.
fn styled_segments(line: &str, style: &mut Style) -> Vec<(Style, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if c.is_control() && c != '\t' {
                continue;
            }
            current.push(c);
            continue;
        }
        // An escape sequence: CSI (`ESC [ params final`), OSC (`ESC ] … BEL` or `… ESC \\`,
        // e.g. a terminal title) or a two-character escape.
        match chars.peek() {
            Some('[') => {}
            Some(']') => {
                let mut previous = ' ';
                for n in chars.by_ref() {
                    if n == '\u{7}' || (previous == '\u{1b}' && n == '\\') {
                        break;
                    }
                    previous = n;
                }
                continue;
            }
            _ => {
                chars.next();
                continue;
            }
        }
        chars.next();
        let mut params = String::new();
        let mut final_byte = None;
        for n in chars.by_ref() {
            if ('\u{40}'..='\u{7e}').contains(&n) {
                final_byte = Some(n);
                break;
            }
            params.push(n);
        }
        if final_byte == Some('m') {
            out.push((*style, std::mem::take(&mut current)));
            let parsed: Vec<u16> = params
                .split([';', ':'])
                .map(|p| {
                    if p.is_empty() {
                        0
                    } else {
                        p.parse().unwrap_or(u16::MAX)
                    }
                })
                .collect();
            style.apply(&parsed);
        }
    }
    out.push((*style, current));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_resets() {
        let html = to_html("\u{1b}[0;31mValueError\u{1b}[0m: bad <x>");
        assert_eq!(
            html,
            "<span class=\"ansi-red\">ValueError</span>: bad &lt;x&gt;"
        );
        let html = to_html("\u{1b}[1;92mok\u{1b}[39m still bold\u{1b}[22m plain");
        assert_eq!(
            html,
            "<span class=\"ansi-bright-green ansi-bold\">ok</span><span class=\"ansi-bold\"> still bold</span> plain"
        );
    }

    #[test]
    fn extended_colours_are_computed() {
        let html = to_html("\u{1b}[38;5;196mx\u{1b}[48;2;1;2;3my");
        assert_eq!(
            html,
            "<span style=\"color:#ff0000\">x</span><span style=\"color:#ff0000;background-color:#010203\">y</span>"
        );
    }

    #[test]
    fn carriage_returns_overwrite_and_other_escapes_vanish() {
        assert_eq!(to_html("10%\r50%\r100%\ndone"), "100%\ndone");
        assert_eq!(to_html("abc\u{8}\u{8}X\n"), "aXc\n");
        assert_eq!(to_html("a\u{1b}[2Kb\u{1b}]0;title\u{7}c"), "abc");
    }

    #[test]
    fn styles_survive_newlines_without_unbalanced_tags() {
        let html = to_html("\u{1b}[31mone\ntwo\u{1b}[0m");
        assert_eq!(
            html,
            "<span class=\"ansi-red\">one</span>\n<span class=\"ansi-red\">two</span>"
        );
    }
}
