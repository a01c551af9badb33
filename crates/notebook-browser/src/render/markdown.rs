//! Markdown cells and HTML outputs → sanitised HTML.
//!
//! Markdown is CommonMark with GitHub's tables, strikethrough and task lists (pulldown-cmark);
//! `$…$` and `$$…$$` math is kept verbatim as `\(…\)` / `\[…\]` inside `<span class="math">`
//! for MathJax or KaTeX, never run through markdown's emphasis rules. Images written as
//! `attachment:NAME` are resolved from the cell's attachments into `data:` URIs.
//!
//! Everything — the markdown's own raw HTML included — then goes through ammonia's whitelist:
//! no `<script>`, `<style>`, `<iframe>`, event handlers, `style` attributes or `javascript:`
//! URLs survive; `class` attributes do (pandas tables, code-block languages); `data:` URLs only
//! as image sources.

use std::borrow::Cow;
use std::sync::OnceLock;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
use serde_json::Value;

use super::escape;

fn sanitizer() -> &'static ammonia::Builder<'static> {
    static SANITIZER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    SANITIZER.get_or_init(|| {
        let mut builder = ammonia::Builder::default();
        builder
            .add_generic_attributes(["class"])
            .add_url_schemes(["data"])
            .attribute_filter(|element, attribute, value| {
                let is_data = value
                    .trim_start()
                    .get(..5)
                    .is_some_and(|s| s.eq_ignore_ascii_case("data:"));
                if is_data && !(element == "img" && attribute == "src") {
                    None
                } else {
                    Some(Cow::Borrowed(value))
                }
            });
        builder
    })
}

/// Sanitises an HTML fragment (an output's `text/html`, a markdown cell's raw HTML).
pub fn sanitize(html: &str) -> String {
    sanitizer().clean(html).to_string()
}

/// Renders a markdown cell (or a `text/markdown` output) to sanitised HTML. `attachments` is
/// the cell's `attachments` object, when it has one.
pub fn to_html(markdown: &str, attachments: Option<&Value>) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_MATH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::InlineMath(tex) => Event::InlineHtml(CowStr::from(format!(
            "<span class=\"math inline\">\\({}\\)</span>",
            escape(&tex)
        ))),
        Event::DisplayMath(tex) => Event::InlineHtml(CowStr::from(format!(
            "<span class=\"math display\">\\[{}\\]</span>",
            escape(&tex)
        ))),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest_url = match attachment(&dest_url, attachments) {
                Some(data_uri) => CowStr::from(data_uri),
                None => dest_url,
            };
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events);
    sanitize(&html)
}

/// `attachment:NAME` → `data:MIME;base64,…` from the cell's attachments (images only).
fn attachment(url: &str, attachments: Option<&Value>) -> Option<String> {
    let name = url.strip_prefix("attachment:")?;
    let bundle = attachments?.get(name)?.as_object()?;
    for mime in ["image/png", "image/jpeg", "image/gif", "image/svg+xml"] {
        if let Some(data) = bundle.get(mime).and_then(Value::as_str) {
            let data: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            if mime == "image/svg+xml" {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(data.as_bytes());
                return Some(format!("data:{mime};base64,{encoded}"));
            }
            return Some(format!("data:{mime};base64,{data}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_markdown_is_sanitised() {
        let html = to_html(
            "# Hi <script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n[x](javascript:alert(3))\n\n<a href=\"data:text/html,<script>alert(4)</script>\">d</a>",
            None,
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("data:text/html"), "{html}");
        assert!(html.contains("<h1>Hi"), "{html}");
    }

    #[test]
    fn math_is_left_for_mathjax() {
        let html = to_html("Energy $E = m_1 c^2$ and\n\n$$\\sum_{i<n} x_i$$", None);
        assert!(
            html.contains("<span class=\"math inline\">\\(E = m_1 c^2\\)</span>"),
            "{html}"
        );
        assert!(html.contains("\\[\\sum_{i&lt;n} x_i\\]"), "{html}");
    }

    #[test]
    fn attachments_become_data_uris() {
        let attachments = serde_json::json!({"dot.png": {"image/png": "iVBORw0KGgo="}});
        let html = to_html("![dot](attachment:dot.png)", Some(&attachments));
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo=\""),
            "{html}"
        );
    }

    #[test]
    fn pandas_tables_keep_their_classes_but_not_styles() {
        let html = sanitize(
            "<style scoped>td{color:red}</style><table class=\"dataframe\" border=\"1\"><tr><td style=\"position:fixed\">1</td></tr></table>",
        );
        assert!(html.contains("class=\"dataframe\""), "{html}");
        assert!(!html.contains("<style"), "{html}");
        assert!(!html.contains("position:fixed"), "{html}");
    }
}
