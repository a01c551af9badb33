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
use clap::Parser;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// The whole request (head and body), built once and written as it is by every client.
    request: Vec<u8>,
    /// A HEAD request's answer has no body whatever its headers say.
    head: bool,
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
    let authority = uri.authority().context("the URL has no host")?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let (host, port) = (authority.host(), authority.port_u16().unwrap_or(80));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))?;
    let body = match &args.body_file {
        Some(f) => std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        None => Vec::new(),
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.as_bytes()).with_context(|| format!("bad method {m}"))?,
        None if args.body_file.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header `{h}`: expected `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header `{h}`: bad name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("header `{h}`: bad value"))?;
        let value = value
            .to_str()
            .with_context(|| format!("header `{h}`: not ASCII"))?;
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == Method::POST || method == Method::PUT {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    Ok(Target {
        addr,
        request,
        head: method == Method::HEAD,
        check: args.check_substring.as_ref().map(|s| s.as_bytes().to_vec()),
        timeout: Duration::from_secs_f64(args.timeout),
    })
}

/// One simulated client: requests back to back on one connection until the window closes.
async fn client(target: Arc<Target>, clock: Arc<Clock>) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<Connection> = None;
    let window_closes = tokio::time::sleep_until(clock.end.into());
    tokio::pin!(window_closes);
    loop {
        let start = Instant::now();
        if start >= clock.end || clock.started.fetch_add(1, Ordering::Relaxed) >= clock.max_requests
        {
            break;
        }
        let attempt = tokio::time::timeout(target.timeout, exchange(&target, &mut conn));
        let outcome = tokio::select! {
            r = attempt => r,
            _ = &mut window_closes => {
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

/// One keep-alive connection and the bytes read from it but not yet consumed.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Sends the request once (connecting first if needed) and reads the whole answer.
async fn exchange(target: &Target, conn: &mut Option<Connection>) -> Result<(), Failure> {
    let c = match conn {
        Some(c) => c,
        None => {
            let stream = TcpStream::connect(target.addr)
                .await
                .map_err(|_| Failure::Transport)?;
            stream.set_nodelay(true).map_err(|_| Failure::Transport)?;
            conn.insert(Connection {
                stream,
                buf: Vec::with_capacity(16 * 1024),
            })
        }
    };
    c.stream
        .write_all(&target.request)
        .await
        .map_err(|_| Failure::Transport)?;
    let answer = read_answer(c, target.head).await?;
    if answer.closes {
        *conn = None;
    }
    if !(200..300).contains(&answer.status) {
        return Err(Failure::Http);
    }
    if let Some(needle) = &target.check
        && !contains(&answer.body, needle)
    {
        return Err(Failure::Check);
    }
    Ok(())
}

/// One answer: its status, body (de-chunked) and whether the server closes the connection.
struct Answer {
    status: u16,
    body: Vec<u8>,
    closes: bool,
}

/// How the answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads more bytes into the connection's buffer; the end of the stream is a transport failure.
async fn fill(c: &mut Connection) -> Result<(), Failure> {
    c.buf.reserve(16 * 1024);
    match c.stream.read_buf(&mut c.buf).await {
        Ok(0) | Err(_) => Err(Failure::Transport),
        Ok(_) => Ok(()),
    }
}

async fn read_answer(c: &mut Connection, head_request: bool) -> Result<Answer, Failure> {
    loop {
        // 1xx answers (100 Continue) precede the real one.
        let (head_len, status, framing, closes) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&c.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or(0);
                    let mut framing = Framing::UntilClose;
                    let mut closes = response.version == Some(0);
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or(Failure::Transport)?;
                            if !matches!(framing, Framing::Chunked) {
                                framing = Framing::Length(n);
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            if h.value.to_ascii_lowercase().ends_with(b"chunked") {
                                framing = Framing::Chunked;
                            }
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            let v = h.value.to_ascii_lowercase();
                            if v.windows(5).any(|w| w == b"close") {
                                closes = true;
                            } else if v.windows(10).any(|w| w == b"keep-alive") {
                                closes = false;
                            }
                        }
                    }
                    if head_request || status == 204 || status == 304 || status < 200 {
                        framing = Framing::Length(0);
                    }
                    break (len, status, framing, closes);
                }
                Ok(httparse::Status::Partial) => fill(c).await?,
                Err(_) => return Err(Failure::Transport),
            }
        };
        c.buf.drain(..head_len);
        let body = match framing {
            Framing::Length(n) => {
                while c.buf.len() < n {
                    fill(c).await?;
                }
                c.buf.drain(..n).collect()
            }
            Framing::Chunked => read_chunked(c).await?,
            Framing::UntilClose => {
                // The end of the stream ends the body.
                while fill(c).await.is_ok() {}
                std::mem::take(&mut c.buf)
            }
        };
        if status >= 200 {
            let closes = closes || matches!(framing, Framing::UntilClose);
            return Ok(Answer {
                status,
                body,
                closes,
            });
        }
    }
}

/// Reads a `Transfer-Encoding: chunked` body (extensions and trailers are skipped).
async fn read_chunked(c: &mut Connection) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = c.buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(c).await?;
        };
        let line = std::str::from_utf8(&c.buf[..line_end]).map_err(|_| Failure::Transport)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| Failure::Transport)?;
        c.buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let end = loop {
                    if let Some(i) = c.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    fill(c).await?;
                };
                c.buf.drain(..end + 2);
                if end == 0 {
                    return Ok(body);
                }
            }
        }
        while c.buf.len() < size + 2 {
            fill(c).await?;
        }
        body.extend_from_slice(&c.buf[..size]);
        c.buf.drain(..size + 2);
    }
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

    /// Serves `answers` (raw bytes, one per request) on one connection, then closes it.
    async fn canned(answers: Vec<&'static [u8]>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            for a in answers {
                let _ = s.read(&mut buf).await;
                s.write_all(a).await.expect("write");
            }
        });
        addr
    }

    fn target_for(addr: SocketAddr) -> Target {
        Target {
            addr,
            request: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            head: false,
            check: Some(b"hello".to_vec()),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn reads_length_chunked_and_error_answers_on_one_connection() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        ])
        .await;
        let target = target_for(addr);
        let mut conn = None;
        assert!(exchange(&target, &mut conn).await.is_ok());
        assert!(exchange(&target, &mut conn).await.is_ok(), "chunked");
        assert!(matches!(
            exchange(&target, &mut conn).await,
            Err(Failure::Check)
        ));
        assert!(matches!(
            exchange(&target, &mut conn).await,
            Err(Failure::Http)
        ));
        assert!(conn.is_none(), "`Connection: close` drops the connection");
    }

    #[tokio::test]
    async fn a_body_until_close_and_a_cut_answer() {
        let addr = canned(vec![b"HTTP/1.0 200 OK\r\n\r\nhello there"]).await;
        let target = target_for(addr);
        let mut conn = None;
        assert!(exchange(&target, &mut conn).await.is_ok());
        assert!(conn.is_none());
        let addr = canned(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello"]).await;
        let target = target_for(addr);
        assert!(matches!(
            exchange(&target, &mut None).await,
            Err(Failure::Transport)
        ));
    }

    #[test]
    fn finds_substrings() {
        assert!(contains(b"{\"success\":true}", b"success"));
        assert!(!contains(b"{}", b"success"));
        assert!(contains(b"", b""));
    }
}
