//! The HTML pages as served (structure, escaping, headers); Chromium checks them rendered.

use mofang_notebook_browser::BrowserOptions;

use crate::Server;
use crate::fixtures::HOSTILE_NAME;

fn page(server: &Server, target: &str) -> String {
    let reply = server.get(target);
    assert_eq!(reply.status, 200, "GET {target}: {}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("script-src"),
        "no scripts without a MathJax URL: {csp}"
    );
    reply.text()
}

#[test]
fn home_redirects_to_the_root_listing() {
    let server = Server::start();
    let reply = server.get("/");
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), Some("/view/"));
}

#[test]
fn directory_page_lists_escaped_names_with_links() {
    let server = Server::start();
    let html = page(&server, "/view/");
    assert!(
        html.contains("<a href=\"/view/plain.ipynb\">plain.ipynb</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"/view/sub%20dir/\">sub dir/</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"/view/link-inside.txt\">"),
        "{html}"
    );
    // The hostile file name is escaped in text and percent-encoded in the link.
    assert!(!html.contains(HOSTILE_NAME), "raw hostile name in the page");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;.ipynb"),
        "{html}"
    );
    assert!(
        html.contains("/view/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.ipynb"),
        "{html}"
    );
    for hidden in [".hidden.ipynb", "__pycache__", "escape.txt", "escape-dir"] {
        assert!(!html.contains(hidden), "{hidden} listed");
    }
    // Directories come first.
    let sub = html.find("sub dir/").expect("sub dir");
    let blob = html.find("blob.bin").expect("blob");
    assert!(sub < blob);
    let inner = page(&server, "/view/sub%20dir/");
    assert!(
        inner.contains("<a href=\"/view/\">root</a>"),
        "breadcrumb to the root: {inner}"
    );
    assert!(
        inner.contains("<a href=\"/view/\">..</a>"),
        "parent link: {inner}"
    );
    assert!(
        inner.contains("<a href=\"/view/sub%20dir/inner.ipynb\">inner.ipynb</a>"),
        "{inner}"
    );
}

#[test]
fn failed_papermill_run_renders_its_banner_traceback_and_statuses() {
    let server = Server::start();
    let page_html = page(&server, "/view/failed.ipynb");
    let html = &page_html[page_html.find("<main>").expect("main")..];
    // The banner is first and links to the anchor before the failing cell.
    let banner = html.find("class=\"cell papermill-error\"").expect("banner");
    let anchor = html.find("id=\"papermill-error-cell\"").expect("anchor");
    let failing = html
        .find("class=\"cell code-cell cell-failed\"")
        .expect("failed cell");
    assert!(
        banner < anchor && anchor < failing,
        "order banner < anchor < failed cell"
    );
    assert!(html.contains("href=\"#papermill-error-cell\""), "{html}");
    assert!(html.contains("An Exception was encountered at"), "{html}");
    // The traceback is coloured, its escape codes gone.
    assert!(
        html.contains("<span class=\"ansi-red\">ZeroDivisionError</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span style=\"color:#626262\">1</span>"),
        "{html}"
    );
    assert!(!html.contains('\u{1b}'), "raw escape codes in the page");
    // Run summary and cell statuses.
    assert!(html.contains("papermill run: failed"), "{html}");
    assert!(
        html.contains("<th>alpha</th><td><code>0.5</code></td>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"status status-failed\">failed</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"status status-pending\">pending</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"tag\">injected-parameters</span>"),
        "{html}"
    );
    assert!(
        html.contains("<pre class=\"stream stderr\">about to divide\n</pre>"),
        "{html}"
    );
}

#[test]
fn plain_notebook_renders_every_output_kind() {
    let server = Server::start();
    let html = page(&server, "/view/plain.ipynb");
    assert!(html.contains("<h1>Plain notebook</h1>"), "{html}");
    assert!(
        html.contains("<span class=\"math inline\">\\(e^{i\\pi} + 1 = 0\\)</span>"),
        "{html}"
    );
    assert!(html.contains("<table>"), "markdown table: {html}");
    assert!(
        html.contains("<span class=\"k\">import</span> math"),
        "{html}"
    );
    assert!(html.contains("In&nbsp;[1]:"), "{html}");
    assert!(
        html.contains("<table class=\"dataframe\">"),
        "HTML output preferred: {html}"
    );
    assert!(!html.contains("0  1"), "text/plain must lose to text/html");
    assert!(
        html.contains("src=\"data:image/png;base64,iVBORw0KGgo"),
        "{html}"
    );
    assert!(
        html.contains("src=\"data:image/svg+xml;base64,"),
        "SVG as an image: {html}"
    );
    assert!(!html.contains("<svg"), "SVG is never inlined");
    assert!(html.contains("&quot;key&quot;: ["), "pretty JSON: {html}");
    assert!(
        html.contains("<div class=\"math latex-output\">$$\\frac{a}{b}$$</div>"),
        "{html}"
    );
    assert!(
        html.contains("<pre class=\"raw\">raw &lt;text&gt;</pre>"),
        "{html}"
    );
}

#[test]
fn report_mode_hides_inputs() {
    let server = Server::start();
    let html = page(&server, "/view/report.ipynb");
    assert!(
        html.contains("<details class=\"input-hidden\">"),
        "source_hidden collapses: {html}"
    );
    assert!(html.contains("REPORT-OUTPUT-42"));
    let report = page(&server, "/view/report.ipynb?report=1");
    assert!(!report.contains("hidden_input_marker"), "{report}");
    assert!(report.contains("REPORT-OUTPUT-42"));
    assert!(report.contains("<h2>Report text</h2>"));
    let plain = page(&server, "/view/plain.ipynb?report=1");
    assert!(
        !plain.contains("import</span> math"),
        "every input hidden: {plain}"
    );
    assert!(plain.contains("hello 3.141592653589793"));
}

#[test]
fn hostile_notebook_is_escaped_and_sanitised() {
    let server = Server::start();
    let target = "/view/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.ipynb";
    let html = page(&server, target);
    assert!(!html.contains("<script"), "a script tag survived: {html}");
    assert!(!html.contains("<iframe"), "{html}");
    assert!(!html.contains("onerror=\""), "{html}");
    assert!(!html.contains("onclick"), "{html}");
    assert!(!html.contains("href=\"javascript:"), "{html}");
    assert!(
        !html.contains("PWNED-JS"),
        "application/javascript is never chosen: {html}"
    );
    assert!(html.contains("safe text"), "{html}");
    assert!(
        html.contains("&lt;script&gt;document.title=&#39;PWNED-STREAM&#39;&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;"),
        "code escaped: {html}"
    );
    assert!(
        html.contains("<title>&lt;img src=x onerror=alert(1)&gt;.ipynb · mofang notebooks</title>"),
        "{html}"
    );
}

#[test]
fn file_pages_preview_text_and_images() {
    let server = Server::start();
    let html = page(&server, "/view/notes.txt");
    assert!(html.contains("notes &lt;b&gt;not bold&lt;/b&gt;"), "{html}");
    let html = page(&server, "/view/script.py");
    assert!(
        html.contains("<span class=\"k\">def</span> <span class=\"nf\">f</span>"),
        "{html}"
    );
    let html = page(&server, "/view/image.png");
    assert!(
        html.contains("<img class=\"file-image\" alt=\"image.png\" src=\"/files/image.png\">"),
        "{html}"
    );
    let html = page(&server, "/view/blob.bin");
    assert!(html.contains("Binary file, 8 B"), "{html}");
    let missing = server.get("/view/missing.ipynb");
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("does not exist"));
}

#[test]
fn the_router_mounts_under_a_prefix() {
    let options = BrowserOptions {
        base_url: "/notebooks/".into(),
        ..BrowserOptions::default()
    };
    let server = Server::start_with(options, Some("/notebooks"));
    // axum's `nest` answers the prefix itself, not the prefix with a trailing slash.
    let reply = server.get("/notebooks");
    assert_eq!(reply.status, 302, "{}", reply.text());
    assert_eq!(reply.header("location"), Some("/notebooks/view/"));
    let html = page(&server, "/notebooks/view/");
    assert!(
        html.contains("<a href=\"/notebooks/view/plain.ipynb\">plain.ipynb</a>"),
        "{html}"
    );
    let html = page(&server, "/notebooks/view/plain.ipynb");
    assert!(
        html.contains("href=\"/notebooks/files/plain.ipynb\""),
        "{html}"
    );
    let model = server.get("/notebooks/api/contents/sub%20dir").json();
    assert_eq!(model["path"], "sub dir");
    assert_eq!(
        server.get("/notebooks/api/contents/%2e%2e/outside").status,
        403
    );
    assert_eq!(server.get("/notebooks/files/notes.txt").status, 200);
}

#[test]
fn a_mathjax_url_is_the_only_script_allowed() {
    let options = BrowserOptions {
        mathjax_url: Some("https://cdn.example.org/mathjax@3/es5/tex-chtml.js".into()),
        ..BrowserOptions::default()
    };
    let server = Server::start_with(options, None);
    let reply = server.get("/view/plain.ipynb");
    let csp = reply.header("content-security-policy").expect("csp");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains(" https://cdn.example.org;"), "{csp}");
    let html = reply.text();
    assert!(
        html.contains(
            "<script async src=\"https://cdn.example.org/mathjax@3/es5/tex-chtml.js\"></script>"
        ),
        "{html}"
    );
}
