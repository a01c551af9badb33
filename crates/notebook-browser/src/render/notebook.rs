//! A notebook (nbformat 4 JSON, as [`crate::contents::read_notebook`] normalises it) → the HTML
//! of its page body.
//!
//! Outputs are chosen by nbconvert's HTML exporter's `display_data_priority`
//! (`nbconvert/exporters/html.py`): text/html, text/markdown, image/svg+xml, text/latex,
//! image/png, image/jpeg, text/plain — without the two entries that would run code
//! (application/vnd.jupyter.widget-view+json, application/javascript) and text/vnd.mermaid
//! (needs a script), and with application/json (pretty-printed) before text/plain.

use base64::Engine as _;
use serde_json::Value;

use super::{PageContext, ansi, escape, highlight, markdown};

/// The mimetypes an output may be shown as, best first.
pub const DISPLAY_PRIORITY: [&str; 8] = [
    "text/html",
    "text/markdown",
    "image/svg+xml",
    "text/latex",
    "image/png",
    "image/jpeg",
    "application/json",
    "text/plain",
];

/// papermill's tag on the error banner and anchor cells of a failed run.
const ERROR_CELL_TAG: &str = "papermill-error-cell-tag";

/// Options of one rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotebookView {
    /// Leave out every code cell's input (papermill's `--report-mode`, `?report=1`).
    pub report: bool,
}

/// The page body for `nb`.
pub fn render(nb: &Value, ctx: &PageContext<'_>, view: NotebookView) -> String {
    let mut out = String::new();
    let language = nb
        .pointer("/metadata/language_info/name")
        .or_else(|| nb.pointer("/metadata/kernelspec/language"))
        .and_then(Value::as_str)
        .unwrap_or("python");
    let kernel = nb
        .pointer("/metadata/kernelspec/display_name")
        .or_else(|| nb.pointer("/metadata/kernelspec/name"))
        .and_then(Value::as_str)
        .unwrap_or(language);
    let raw_url = format!("{}files/{}", ctx.base_url, ctx.path.to_url());
    let view_url = format!("{}view/{}", ctx.base_url, ctx.path.to_url());
    out.push_str("<div class=\"nb-header\">");
    out.push_str(&format!(
        "<h1 class=\"nb-title\">{}</h1><div class=\"nb-meta\"><span class=\"kernel\">{}</span>",
        escape(ctx.path.name()),
        escape(kernel)
    ));
    out.push_str(&format!(
        " · <a href=\"{}\">raw .ipynb</a> · <a href=\"{}?download=1\">download</a> · ",
        escape(&raw_url),
        escape(&raw_url)
    ));
    if view.report {
        out.push_str(&format!(
            "<a class=\"toggle-report\" href=\"{}\">show inputs</a>",
            escape(&view_url)
        ));
    } else {
        out.push_str(&format!(
            "<a class=\"toggle-report\" href=\"{}?report=1\">report view (hide inputs)</a>",
            escape(&view_url)
        ));
    }
    out.push_str("</div></div>");
    if let Some(pm) = nb.pointer("/metadata/papermill").and_then(Value::as_object) {
        papermill_summary(&mut out, pm);
    }
    out.push_str("<div class=\"cells\">");
    let empty = Vec::new();
    let cells = nb.get("cells").and_then(Value::as_array).unwrap_or(&empty);
    for (index, cell) in cells.iter().enumerate() {
        render_cell(&mut out, index, cell, language, view);
    }
    if cells.is_empty() {
        out.push_str("<p class=\"empty\">This notebook has no cells.</p>");
    }
    out.push_str("</div>");
    out
}

fn papermill_summary(out: &mut String, pm: &serde_json::Map<String, Value>) {
    let failed = pm.get("exception").and_then(Value::as_bool) == Some(true);
    out.push_str(&format!(
        "<section class=\"papermill-summary{}\"><h2>papermill run{}</h2><dl>",
        if failed { " failed" } else { "" },
        if failed { ": failed" } else { "" }
    ));
    for (key, label) in [
        ("input_path", "input"),
        ("output_path", "output"),
        ("start_time", "started"),
        ("end_time", "ended"),
        ("duration", "duration (s)"),
        ("version", "papermill version"),
    ] {
        if let Some(value) = pm.get(key).filter(|v| !v.is_null()) {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", escape(&text)));
        }
    }
    if let Some(params) = pm.get("parameters").and_then(Value::as_object)
        && !params.is_empty()
    {
        out.push_str("<dt>parameters</dt><dd><table class=\"parameters\">");
        for (name, value) in params {
            out.push_str(&format!(
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                escape(name),
                escape(&value.to_string())
            ));
        }
        out.push_str("</table></dd>");
    }
    out.push_str("</dl></section>");
}

fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(lines)) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn tags(cell: &Value) -> Vec<&str> {
    cell.pointer("/metadata/tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn render_cell(out: &mut String, index: usize, cell: &Value, language: &str, view: NotebookView) {
    let cell_type = cell.get("cell_type").and_then(Value::as_str).unwrap_or("");
    let source = text_of(cell.get("source"));
    let tags = tags(cell);
    if tags.contains(&ERROR_CELL_TAG) {
        // papermill's banner ("An Exception was encountered at In [n]") and the anchor before
        // the failing cell: their inline styles do not survive sanitising, so they get ours.
        let anchor = source.contains("id=\"papermill-error-cell\"");
        out.push_str(&format!(
            "<div class=\"cell papermill-error\"{} data-cell=\"{index}\" role=\"alert\">{}</div>",
            if anchor {
                " id=\"papermill-error-cell\""
            } else {
                ""
            },
            markdown::to_html(&source, None)
        ));
        return;
    }
    let pm_status = cell
        .pointer("/metadata/papermill/status")
        .and_then(Value::as_str);
    let failed = pm_status == Some("failed");
    let mut classes = format!("cell {cell_type}-cell");
    if failed {
        classes.push_str(" cell-failed");
    }
    out.push_str(&format!(
        "<div class=\"{}\" id=\"cell-{index}\">",
        escape(&classes)
    ));
    let mut badges = String::new();
    for tag in &tags {
        badges.push_str(&format!("<span class=\"tag\">{}</span>", escape(tag)));
    }
    if let Some(status) = pm_status.filter(|s| *s != "completed") {
        badges.push_str(&format!(
            "<span class=\"status status-{0}\">{0}</span>",
            escape(status)
        ));
    }
    if let Some(d) = cell
        .pointer("/metadata/papermill/duration")
        .and_then(Value::as_f64)
    {
        badges.push_str(&format!("<span class=\"duration\">{d:.2} s</span>"));
    }
    if !badges.is_empty() {
        out.push_str(&format!("<div class=\"badges\">{badges}</div>"));
    }
    match cell_type {
        "markdown" => {
            out.push_str("<div class=\"markdown\">");
            out.push_str(&markdown::to_html(&source, cell.get("attachments")));
            out.push_str("</div>");
        }
        "code" => render_code_cell(out, cell, &source, language, view),
        _ => {
            out.push_str("<pre class=\"raw\">");
            out.push_str(&escape(&source));
            out.push_str("</pre>");
        }
    }
    out.push_str("</div>");
}

fn prompt(kind: &str, count: Option<&Value>) -> String {
    let n = count
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
        .unwrap_or_else(|| " ".into());
    format!("<div class=\"prompt\">{kind}&nbsp;[{n}]:</div>")
}

fn render_code_cell(
    out: &mut String,
    cell: &Value,
    source: &str,
    language: &str,
    view: NotebookView,
) {
    let count = cell.get("execution_count");
    let hidden = cell
        .pointer("/metadata/jupyter/source_hidden")
        .and_then(Value::as_bool)
        == Some(true);
    if !view.report {
        let input = format!(
            "<div class=\"input\">{}<pre class=\"code lang-{}\"><code>{}</code></pre></div>",
            prompt("In", count),
            escape(&language.to_ascii_lowercase()),
            highlight::highlight(source, language)
        );
        if hidden {
            out.push_str(&format!(
                "<details class=\"input-hidden\"><summary>input hidden</summary>{input}</details>"
            ));
        } else {
            out.push_str(&input);
        }
    }
    let outputs_hidden = cell
        .pointer("/metadata/jupyter/outputs_hidden")
        .and_then(Value::as_bool)
        == Some(true);
    let Some(outputs) = cell
        .get("outputs")
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
    else {
        return;
    };
    if outputs_hidden {
        out.push_str("<div class=\"outputs-hidden\">outputs hidden</div>");
        return;
    }
    out.push_str("<div class=\"outputs\">");
    for output in outputs {
        render_output(out, output, count);
    }
    out.push_str("</div>");
}

fn render_output(out: &mut String, output: &Value, count: Option<&Value>) {
    let output_type = output
        .get("output_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    match output_type {
        "stream" => {
            let name = output
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("stdout");
            let name = if name == "stderr" { "stderr" } else { "stdout" };
            out.push_str(&format!(
                "<div class=\"output\"><div class=\"prompt\"></div><pre class=\"stream {name}\">{}</pre></div>",
                ansi::to_html(&text_of(output.get("text")))
            ));
        }
        "error" => {
            let traceback: Vec<String> = output
                .get("traceback")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let text = if traceback.is_empty() {
                format!(
                    "{}: {}",
                    output
                        .get("ename")
                        .and_then(Value::as_str)
                        .unwrap_or("Error"),
                    output.get("evalue").and_then(Value::as_str).unwrap_or("")
                )
            } else {
                traceback.join("\n")
            };
            out.push_str(&format!(
                "<div class=\"output\"><div class=\"prompt\"></div><pre class=\"error\">{}</pre></div>",
                ansi::to_html(&text)
            ));
        }
        "execute_result" | "display_data" => {
            let prompt_html = if output_type == "execute_result" {
                prompt("Out", count)
            } else {
                "<div class=\"prompt\"></div>".into()
            };
            out.push_str("<div class=\"output\">");
            out.push_str(&prompt_html);
            out.push_str(&mime_bundle(output));
            out.push_str("</div>");
        }
        other => out.push_str(&format!(
            "<div class=\"output unsupported\">output of unknown type `{}`</div>",
            escape(other)
        )),
    }
}

/// The best representation of an output's mime bundle, by [`DISPLAY_PRIORITY`].
fn mime_bundle(output: &Value) -> String {
    let Some(data) = output.get("data").and_then(Value::as_object) else {
        return "<div class=\"unsupported\">output without data</div>".into();
    };
    for mime in DISPLAY_PRIORITY {
        let Some(value) = data.get(mime) else {
            continue;
        };
        let text = text_of(Some(value));
        let metadata = output.pointer(&format!("/metadata/{}", mime.replace('/', "~1")));
        return match mime {
            "text/html" => format!(
                "<div class=\"html-output\">{}</div>",
                markdown::sanitize(&text)
            ),
            "text/markdown" => format!(
                "<div class=\"markdown-output\">{}</div>",
                markdown::to_html(&text, None)
            ),
            "image/svg+xml" => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                image("image/svg+xml", &encoded, metadata)
            }
            "text/latex" => format!("<div class=\"math latex-output\">{}</div>", escape(&text)),
            "image/png" | "image/jpeg" => {
                let b64: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                if b64
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
                {
                    image(mime, &b64, metadata)
                } else {
                    format!("<div class=\"unsupported\">{mime} output is not base64</div>")
                }
            }
            "application/json" => {
                let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
                format!("<pre class=\"json-output\">{}</pre>", escape(&pretty))
            }
            _ => format!("<pre class=\"text-output\">{}</pre>", ansi::to_html(&text)),
        };
    }
    let mimes: Vec<&str> = data.keys().map(String::as_str).collect();
    format!(
        "<div class=\"unsupported\">no displayable representation (has {})</div>",
        escape(&mimes.join(", "))
    )
}

fn image(mime: &str, base64: &str, metadata: Option<&Value>) -> String {
    let mut attrs = String::new();
    for dim in ["width", "height"] {
        if let Some(v) = metadata.and_then(|m| m.get(dim)).and_then(Value::as_f64) {
            attrs.push_str(&format!(" {dim}=\"{}\"", v.max(0.0).round() as u64));
        }
    }
    format!(
        "<img class=\"image-output\" alt=\"{mime} output\" src=\"data:{mime};base64,{base64}\"{attrs}>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RelPath;
    use serde_json::json;

    fn page(nb: &Value, report: bool) -> String {
        let path = RelPath::from_url("dir/nb.ipynb").expect("valid");
        let ctx = PageContext {
            base_url: "/",
            path: &path,
            mathjax_url: None,
        };
        render(nb, &ctx, NotebookView { report })
    }

    #[test]
    fn priority_picks_html_over_plain_and_png_over_plain() {
        let nb = json!({"cells": [{"cell_type": "code", "execution_count": 3, "metadata": {}, "source": "x",
            "outputs": [
                {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                 "data": {"text/plain": "PLAIN", "text/html": "<b>HTML</b><script>alert(1)</script>"}},
                {"output_type": "display_data", "metadata": {"image/png": {"width": 20}},
                 "data": {"text/plain": "<Figure>", "image/png": "iVBORw0K\nGgo=\n"}},
                {"output_type": "display_data", "metadata": {},
                 "data": {"application/json": {"a": [1, 2]}, "text/plain": "{'a': [1, 2]}"}}
            ]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
        let html = page(&nb, false);
        assert!(html.contains("<b>HTML</b>"), "{html}");
        assert!(
            !html.contains("PLAIN") && !html.contains("alert(1)"),
            "{html}"
        );
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo=\" width=\"20\""),
            "{html}"
        );
        assert!(html.contains("Out&nbsp;[3]:"), "{html}");
        assert!(html.contains("&quot;a&quot;: [\n    1,"), "{html}");
    }

    #[test]
    fn report_mode_and_hidden_sources() {
        let nb = json!({"cells": [
            {"cell_type": "code", "execution_count": 1, "metadata": {"jupyter": {"source_hidden": true}},
             "source": "secret_input = 1", "outputs": [{"output_type": "stream", "name": "stdout", "text": "visible output"}]},
            {"cell_type": "code", "execution_count": 2, "metadata": {}, "source": "plain_input = 2", "outputs": []}
        ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
        let normal = page(&nb, false);
        assert!(
            normal.contains("<details class=\"input-hidden\">"),
            "{normal}"
        );
        assert!(normal.contains("plain_input"), "{normal}");
        let report = page(&nb, true);
        assert!(
            !report.contains("secret_input") && !report.contains("plain_input"),
            "{report}"
        );
        assert!(report.contains("visible output"), "{report}");
    }
}
