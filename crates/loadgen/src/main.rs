//! `mofang-loadgen`: a closed-loop HTTP/1.1 load generator for `bench/run.sh`.
//!
//! C simulated clients each hold one keep-alive connection and send the same request (method,
//! URL, headers, body read once from a file) back to back: a new request leaves as soon as the
//! previous answer is read. The run is a warm-up followed by a measured window; every answer
//! completed inside the window counts, its latency (connect included when the server closed the
//! connection and the client had to reconnect) goes into the histogram if it succeeded. A non-2xx
//! status, a transport error, a request over `--timeout` and (with `--check-substring`) a body
//! without the substring are errors, counted separately. Requests still in flight when the window
//! closes are dropped and reported as `unfinished`. Prints one JSON line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(name = "mofang-loadgen", version, about, long_about = None)]
struct Args {
    /// Target URL, plain HTTP: http://HOST:PORT/PATH[?QUERY].
    url: String,
    /// HTTP method; default POST with --body-file, else GET.
    #[arg(short = 'X', long)]
    method: Option<String>,
    /// Request header `Name: value`; repeat for several.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// File whose bytes are the request body (read once, sent by every request).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Simulated clients, each with its own connection and one request in flight.
    #[arg(short, long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of measurement, after the warm-up.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement starts (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds one request may take (connect, send, whole answer) before it counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Stop after this many requests in total (warm-up included).
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// An answer whose body lacks this string is an error.
    #[arg(long)]
    check_substring: Option<String>,
    /// Runtime worker threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What every client sends, and how to judge the answer.
struct Target {
    addr: SocketAddr,
    method: Method,
    uri: Uri,
    host: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    check: Option<Vec<u8>>,
    timeout: Duration,
}

struct Clock {
    measure_from: Instant,
    end: Instant,
    max_requests: u64,
    started: AtomicU64,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    http_errors: u64,
    transport_errors: u64,
    timeouts: u64,
    check_failures: u64,
    unfinished: u64,
    last_done: Option<Instant>,
}

enum Failure {
    Http,
    Transport,
    Check,
}

type Sender = SendRequest<Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.threads == 0 {
        bail!("--concurrency and --threads must be at least 1");
    }
    for (flag, v) in [
        ("--duration", args.duration),
        ("--warmup", args.warmup),
        ("--timeout", args.timeout),
    ] {
        if !v.is_finite() || v < 0.0 || (flag != "--warmup" && v == 0.0) {
            bail!("{flag}: expected a positive number of seconds, got {v}");
        }
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(run(args))?;
    println!("{report}");
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let target = Arc::new(target(&args).await?);
    let now = Instant::now();
    let measure_from = now + Duration::from_secs_f64(args.warmup);
    let clock = Arc::new(Clock {
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
        max_requests: args.max_requests,
        started: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(client(target.clone(), clock.clone())))
        .collect();
    let mut all = Stats::default();
    for task in tasks {
        let s = task.await.context("a client task panicked")?;
        all.latencies_us.extend(s.latencies_us);
        all.http_errors += s.http_errors;
        all.transport_errors += s.transport_errors;
        all.timeouts += s.timeouts;
        all.check_failures += s.check_failures;
        all.unfinished += s.unfinished;
        all.last_done = all.last_done.max(s.last_done);
    }
    // The window ends at its deadline, or earlier if --max-requests stopped every client.
    let window_end = if clock.started.load(Ordering::Relaxed) > clock.max_requests {
        all.last_done.unwrap_or(clock.end).min(clock.end)
    } else {
        clock.end
    };
    let window = window_end
        .saturating_duration_since(clock.measure_from)
        .as_secs_f64();
    let ok = all.latencies_us.len() as u64;
    let errors = all.http_errors + all.transport_errors + all.timeouts + all.check_failures;
    all.latencies_us.sort_unstable();
    let ms = |us: Option<u64>| us.map_or(serde_json::Value::Null, |v| (v as f64 / 1e3).into());
    let lat = &all.latencies_us;
    Ok(serde_json::json!({
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "http_errors": all.http_errors,
        "transport_errors": all.transport_errors,
        "timeouts": all.timeouts,
        "check_failures": all.check_failures,
        "unfinished": all.unfinished,
        "rps": if window > 0.0 { ok as f64 / window } else { 0.0 },
        "p50_ms": ms(percentile(lat, 0.50)),
        "p90_ms": ms(percentile(lat, 0.90)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "max_ms": ms(lat.last().copied()),
        "mean_ms": ms((!lat.is_empty()).then(|| lat.iter().sum::<u64>() / lat.len() as u64)),
        "concurrency": args.concurrency,
        "window_s": window,
    }))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

async fn target(args: &Args) -> anyhow::Result<Target> {
    let uri: Uri = args
        .url
        .parse()
        .with_context(|| format!("bad URL {}", args.url))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported, got {}", args.url);
    }
    let authority = uri.authority().context("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))?;
    let path: Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .context("bad path")?;
    let body = match &args.body_file {
        Some(f) => {
            Bytes::from(std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?)
        }
        None => Bytes::new(),
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.as_bytes()).with_context(|| format!("bad method {m}"))?,
        None if args.body_file.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header `{h}`: expected `Name: value`"))?;
        headers.push((
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        ));
    }
    Ok(Target {
        addr,
        method,
        uri: path,
        host: HeaderValue::from_str(authority.as_str())?,
        headers,
        body,
        check: args.check_substring.as_ref().map(|s| s.as_bytes().to_vec()),
        timeout: Duration::from_secs_f64(args.timeout),
    })
}

/// One simulated client: requests back to back on one connection until the window closes.
async fn client(target: Arc<Target>, clock: Arc<Clock>) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<Sender> = None;
    loop {
        let start = Instant::now();
        if start >= clock.end || clock.started.fetch_add(1, Ordering::Relaxed) >= clock.max_requests
        {
            break;
        }
        let attempt = tokio::time::timeout(target.timeout, exchange(&target, &mut conn));
        let outcome = tokio::select! {
            r = attempt => r,
            _ = tokio::time::sleep_until(clock.end.into()) => {
                stats.unfinished += 1;
                break;
            }
        };
        let done = Instant::now();
        if matches!(outcome, Ok(Err(Failure::Transport)) | Err(_)) {
            conn = None; // broken, or the late answer may still arrive on it
        }
        if done < clock.measure_from || done > clock.end {
            continue; // warm-up: not counted
        }
        stats.last_done = Some(done);
        match outcome {
            Ok(Ok(())) => stats
                .latencies_us
                .push(done.duration_since(start).as_micros() as u64),
            Ok(Err(Failure::Http)) => stats.http_errors += 1,
            Ok(Err(Failure::Check)) => stats.check_failures += 1,
            Ok(Err(Failure::Transport)) => stats.transport_errors += 1,
            Err(_elapsed) => stats.timeouts += 1,
        }
    }
    stats
}

/// Sends the request once (connecting first if needed) and reads the whole answer.
async fn exchange(target: &Target, conn: &mut Option<Sender>) -> Result<(), Failure> {
    if let Some(sender) = conn.as_mut()
        && sender.ready().await.is_err()
    {
        *conn = None; // the server closed it between requests
    }
    let sender = match conn {
        Some(sender) => sender,
        None => conn.insert(connect(target.addr).await.map_err(|_| Failure::Transport)?),
    };
    let mut request = Request::builder()
        .method(target.method.clone())
        .uri(target.uri.clone())
        .header(HOST, target.host.clone());
    for (name, value) in &target.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(target.body.clone()))
        .map_err(|_| Failure::Transport)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| Failure::Transport)?;
    let status = response.status();
    let closes = match response.headers().get(CONNECTION) {
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"close") => true,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"keep-alive") => false,
        _ => response.version() == Version::HTTP_10,
    };
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| Failure::Transport)?
        .to_bytes();
    if closes {
        *conn = None;
    }
    if !status.is_success() {
        return Err(Failure::Http);
    }
    if let Some(needle) = &target.check
        && !contains(&body, needle)
    {
        return Err(Failure::Check);
    }
    Ok(())
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn finds_substrings() {
        assert!(contains(b"{\"success\":true}", b"success"));
        assert!(!contains(b"{}", b"success"));
        assert!(contains(b"", b""));
    }
}
