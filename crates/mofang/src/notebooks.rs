//! `mofang notebooks …`: the read-only notebook browser (crates/notebook-browser).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mofang_notebook_browser::{Browser, BrowserOptions};

#[derive(Debug, Subcommand)]
pub enum NotebooksCommand {
    /// Browse ROOT read-only in a web browser: directory pages, rendered notebooks, raw files
    /// (/files/…) and Jupyter's contents API (/api/contents/…). Writes are refused.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The directory to browse, or s3://bucket[/prefix] (endpoint and credentials from the
    /// usual AWS_* variables).
    root: String,
    /// Address to listen on (default: this machine only; 0.0.0.0 for every interface).
    #[arg(long, env = "MOFANG_NOTEBOOKS_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, env = "MOFANG_NOTEBOOKS_PORT", default_value_t = 8890)]
    port: u16,
    /// Largest file served, in bytes (contents API, raw files, notebook pages).
    #[arg(long, env = "MOFANG_NOTEBOOKS_MAX_FILE_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_file_bytes: u64,
    /// URL of a MathJax 3 script to typeset LaTeX with (e.g. a CDN's tex-chtml.js); without it
    /// pages load no script and show LaTeX as written.
    #[arg(long, env = "MOFANG_NOTEBOOKS_MATHJAX_URL")]
    mathjax_url: Option<String>,
    /// Write the bound address to this file once serving (for scripts and tests).
    #[arg(long, env = "MOFANG_NOTEBOOKS_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
}

pub async fn run(command: NotebooksCommand) -> anyhow::Result<()> {
    match command {
        NotebooksCommand::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Errors name the root ("… does not exist", "… is not a directory", "s3://…: no such
    // bucket …"); stat-ing the root makes a missing bucket or refused credentials fail here, not
    // per request.
    let storage = mofang_notebook_browser::open_root(&args.root)?;
    storage
        .stat(&mofang_notebook_browser::RelPath::root())
        .await?;
    let browser = Browser::new(
        storage,
        BrowserOptions {
            max_file_bytes: args.max_file_bytes,
            mathjax_url: args.mathjax_url,
            ..BrowserOptions::default()
        },
    )?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--host, --port)"))?;
    let bound = listener.local_addr()?;
    tracing::info!(root = %args.root, "notebook browser on http://{bound}/");
    if let Some(path) = &args.address_file {
        std::fs::write(path, bound.to_string())
            .with_context(|| format!("cannot write --address-file {}", path.display()))?;
    }
    mofang_notebook_browser::serve(listener, browser, crate::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
