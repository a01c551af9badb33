//! Server-side HTML: the page shell, directory listings, file previews and notebooks.
//!
//! Pages carry no JavaScript of their own, and the HTTP layer sends them with a Content
//! Security Policy that forbids scripts (unless a MathJax URL is configured, then only that
//! script), so even a sanitiser miss cannot run notebook content. Every string from a file name,
//! notebook or output is escaped here or sanitised by [`markdown`].

pub mod ansi;
pub mod highlight;
pub mod markdown;
pub mod notebook;

use std::time::SystemTime;

use crate::RelPath;
use crate::contents::iso8601;
use crate::storage::{Entry, Kind};

/// Where a page lives, for links and breadcrumbs.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    /// The browser's URL prefix, starting and ending with `/`.
    pub base_url: &'a str,
    /// The file or directory the page shows.
    pub path: &'a RelPath,
    /// A MathJax script to load, if configured.
    pub mathjax_url: Option<&'a str>,
}

/// Appends `s` with `& < > " '` escaped (safe in text and in quoted attributes).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for HTML text or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn view_url(ctx: &PageContext<'_>, path: &RelPath) -> String {
    format!("{}view/{}", ctx.base_url, path.to_url())
}

fn breadcrumbs(ctx: &PageContext<'_>, is_dir: bool) -> String {
    let mut out = String::from("<nav class=\"breadcrumbs\" aria-label=\"breadcrumbs\">");
    out.push_str(&format!(
        "<a href=\"{}\">root</a>",
        escape(&view_url(ctx, &RelPath::root()))
    ));
    let mut so_far = RelPath::root();
    let last = ctx.path.segments().len();
    for (i, segment) in ctx.path.segments().iter().enumerate() {
        let Ok(next) = so_far.join(segment) else {
            break;
        };
        so_far = next;
        out.push_str("<span class=\"sep\">/</span>");
        if i + 1 == last {
            out.push_str(&format!(
                "<span class=\"current\">{}</span>",
                escape(segment)
            ));
        } else {
            let mut url = view_url(ctx, &so_far);
            url.push('/');
            out.push_str(&format!(
                "<a href=\"{}\">{}</a>",
                escape(&url),
                escape(segment)
            ));
        }
    }
    if is_dir && last > 0 {
        out.push_str("<span class=\"sep\">/</span>");
    }
    out.push_str("</nav>");
    out
}

/// The inline script configuring MathJax (only when a MathJax URL is configured); the page's
/// Content-Security-Policy allows exactly this script by its hash.
pub const MATHJAX_CONFIG: &str = r"window.MathJax={tex:{inlineMath:[['$','$'],['\\(','\\)']],displayMath:[['$$','$$'],['\\[','\\]']]}};";

/// A whole HTML page around `body`.
pub fn page(ctx: &PageContext<'_>, title: &str, is_dir: bool, body: &str) -> String {
    let mathjax = match ctx.mathjax_url {
        Some(url) => format!(
            "<script>{MATHJAX_CONFIG}</script><script async src=\"{}\"></script>",
            escape(url)
        ),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · mofang notebooks</title><style>{CSS}</style>{mathjax}</head>\
         <body><header class=\"topbar\"><a class=\"brand\" href=\"{home}\">mofang notebooks</a>{crumbs}</header>\
         <main>{body}</main></body></html>\n",
        title = escape(title),
        home = escape(&view_url(ctx, &RelPath::root())),
        crumbs = breadcrumbs(ctx, is_dir),
    )
}

/// An error page (the HTML views answer errors with HTML, the APIs with JSON).
pub fn error_page(ctx: &PageContext<'_>, status: u16, message: &str) -> String {
    let body = format!(
        "<section class=\"error-page\"><h1>{status}</h1><p class=\"message\">{}</p></section>",
        escape(message)
    );
    page(ctx, &format!("{status}"), false, &body)
}

fn human_size(size: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn short_time(t: SystemTime) -> String {
    // 2024-05-01T12:34:56.123456Z → 2024-05-01 12:34:56 UTC
    let iso = iso8601(t);
    let date = iso.get(..10).unwrap_or(&iso);
    let time = iso.get(11..19).unwrap_or("");
    format!("{date} {time} UTC")
}

/// The body of a directory page: a table of the listable children, directories first.
pub fn directory(ctx: &PageContext<'_>, entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (a.kind != Kind::Directory, a.path.name().to_lowercase())
            .cmp(&(b.kind != Kind::Directory, b.path.name().to_lowercase()))
    });
    let title = if ctx.path.is_root() {
        "/".to_owned()
    } else {
        format!("{}/", ctx.path)
    };
    let mut out = format!("<h1 class=\"dir-title\">{}</h1>", escape(&title));
    out.push_str(
        "<table class=\"listing\"><thead><tr><th>name</th><th class=\"size\">size</th>\
         <th class=\"modified\">last modified</th></tr></thead><tbody>",
    );
    if !ctx.path.is_root() {
        let parent = ctx.path.parent();
        let mut url = view_url(ctx, &parent);
        if !parent.is_root() {
            url.push('/');
        }
        out.push_str(&format!(
            "<tr class=\"parent\"><td><a href=\"{}\">..</a></td><td></td><td></td></tr>",
            escape(&url)
        ));
    }
    for entry in &sorted {
        let name = entry.path.name();
        let (class, mut url) = match entry.kind {
            Kind::Directory => ("directory", view_url(ctx, &entry.path)),
            Kind::File if name.ends_with(".ipynb") => ("notebook", view_url(ctx, &entry.path)),
            Kind::File => ("file", view_url(ctx, &entry.path)),
        };
        if entry.kind == Kind::Directory {
            url.push('/');
        }
        let shown = if entry.kind == Kind::Directory {
            format!("{name}/")
        } else {
            name.to_owned()
        };
        out.push_str(&format!(
            "<tr class=\"{class}\"><td><span class=\"icon\" aria-hidden=\"true\"></span><a href=\"{}\">{}</a></td>\
             <td class=\"size\">{}</td><td class=\"modified\">{}</td></tr>",
            escape(&url),
            escape(&shown),
            entry.size.map(human_size).unwrap_or_default(),
            short_time(entry.modified),
        ));
    }
    out.push_str("</tbody></table>");
    if sorted.is_empty() {
        out.push_str("<p class=\"empty\">This directory is empty.</p>");
    }
    out
}

/// How a non-notebook file is previewed.
#[derive(Debug)]
pub enum FilePreview<'a> {
    /// UTF-8 text, shown in a `<pre>` (highlighted when the language is known).
    Text { text: &'a str, language: &'a str },
    /// An image, shown from `/files/`.
    Image,
    /// Anything else: size and a download link.
    Binary { size: u64 },
}

/// The body of a file page.
pub fn file(ctx: &PageContext<'_>, preview: FilePreview<'_>) -> String {
    let raw = format!("{}files/{}", ctx.base_url, ctx.path.to_url());
    let mut out = format!(
        "<h1 class=\"file-title\">{}</h1><p class=\"file-links\"><a href=\"{raw}\">raw</a> · \
         <a href=\"{raw}?download=1\">download</a></p>",
        escape(ctx.path.name()),
        raw = escape(&raw),
    );
    match preview {
        FilePreview::Text { text, language } => out.push_str(&format!(
            "<pre class=\"file-text code\"><code>{}</code></pre>",
            highlight::highlight(text, language)
        )),
        FilePreview::Image => out.push_str(&format!(
            "<img class=\"file-image\" alt=\"{}\" src=\"{}\">",
            escape(ctx.path.name()),
            escape(&raw)
        )),
        FilePreview::Binary { size } => out.push_str(&format!(
            "<p class=\"binary\">Binary file, {}; no preview.</p>",
            human_size(size)
        )),
    }
    out
}

const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#656d76;--border:#d0d7de;--bg:#fff;--code-bg:#f6f8fa;--accent:#0969da;--err:#cf222e;--err-bg:#ffebe9}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.topbar{display:flex;gap:1.5em;align-items:center;padding:.6em 1.5em;border-bottom:1px solid var(--border);background:#f6f8fa}
.brand{font-weight:600;color:var(--fg)}
.breadcrumbs .sep{color:var(--muted);margin:0 .25em}.breadcrumbs .current{font-weight:600}
main{max-width:1100px;margin:0 auto;padding:1em 1.5em 4em}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table.listing{width:100%;border-collapse:collapse}
.listing th,.listing td{text-align:left;padding:.35em .6em;border-bottom:1px solid var(--border)}
.listing .size,.listing .modified{color:var(--muted);white-space:nowrap}
.listing .icon::before{display:inline-block;width:1.6em;color:var(--muted)}
.listing tr.directory .icon::before{content:"▸"}.listing tr.notebook .icon::before{content:"◆"}.listing tr.file .icon::before{content:"·"}
.nb-title{margin:.2em 0 0}.nb-meta{color:var(--muted);margin-bottom:1em}
.papermill-summary{border:1px solid var(--border);border-radius:6px;padding:.5em 1em;margin:0 0 1em;background:#f6f8fa}
.papermill-summary.failed{border-color:var(--err);background:var(--err-bg)}
.papermill-summary h2{font-size:1em;margin:.2em 0}
.papermill-summary dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:0}
.papermill-summary dt{color:var(--muted)}.papermill-summary dd{margin:0}
.cell{margin:.6em 0;padding:.2em 0;border-left:3px solid transparent}
.cell-failed{border-left-color:var(--err);background:#fff8f8}
.papermill-error{border:2px solid var(--err);background:var(--err-bg);color:var(--err);border-radius:6px;padding:.6em 1em;font-size:1.2em;font-weight:600}
.papermill-error a{color:var(--err);text-decoration:underline}
.badges{margin-left:5.5em;font-size:12px}
.tag,.status,.duration{display:inline-block;border:1px solid var(--border);border-radius:10px;padding:0 .5em;margin-right:.3em;color:var(--muted)}
.status-failed{border-color:var(--err);color:var(--err);font-weight:600}
.input,.output{display:flex;gap:.5em}
.prompt{flex:0 0 5em;text-align:right;color:var(--muted);font:12px/1.9 ui-monospace,monospace;user-select:none}
.input pre.code{flex:1;background:var(--code-bg);border:1px solid var(--border);border-radius:4px;padding:.5em .7em}
.output>:not(.prompt){flex:1;min-width:0;overflow-x:auto;padding:.2em .7em}
.markdown,.raw{margin-left:5.5em}
.stream.stderr{background:#fff5f5}
pre.error{background:#fff5f5;border-left:3px solid var(--err)}
.input-hidden>summary{margin-left:5.5em;color:var(--muted);cursor:pointer;font-size:13px}
.outputs-hidden,.unsupported{color:var(--muted);font-style:italic;margin-left:5.5em}
img.image-output,img.file-image{max-width:100%;height:auto}
.html-output table,.markdown table{border-collapse:collapse}
.html-output th,.html-output td,.markdown th,.markdown td{border:1px solid var(--border);padding:.2em .5em}
.math{font-family:"Latin Modern Math","STIX Two Math",serif}
.error-page .message{font-size:1.1em}
.k{color:#cf222e;font-weight:600}.kc{color:#0550ae}.nb{color:#8250df}.nf{color:#6639ba;font-weight:600}.s{color:#0a3069}.c{color:#6e7781;font-style:italic}.n{color:#0550ae}.d{color:#953800}.m{color:#953800}
.ansi-black{color:#3e424d}.ansi-red{color:#e75c58}.ansi-green{color:#00a250}.ansi-yellow{color:#ddb62b}.ansi-blue{color:#208ffb}.ansi-magenta{color:#d160c4}.ansi-cyan{color:#60c6c8}.ansi-white{color:#c5c1b4}
.ansi-bright-black{color:#282c36}.ansi-bright-red{color:#b22b31}.ansi-bright-green{color:#007427}.ansi-bright-yellow{color:#b27d12}.ansi-bright-blue{color:#0065ca}.ansi-bright-magenta{color:#a03196}.ansi-bright-cyan{color:#258f8f}.ansi-bright-white{color:#a1a6b2}
.ansi-bg-black{background:#3e424d}.ansi-bg-red{background:#e75c58}.ansi-bg-green{background:#00a250}.ansi-bg-yellow{background:#ddb62b}.ansi-bg-blue{background:#208ffb}.ansi-bg-magenta{background:#d160c4}.ansi-bg-cyan{background:#60c6c8}.ansi-bg-white{background:#c5c1b4}
.ansi-bold{font-weight:700}.ansi-italic{font-style:italic}.ansi-underline{text-decoration:underline}
"#;
