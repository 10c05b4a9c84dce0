//! A small HTTP/1.1 server for a job's metrics: `GET /metrics` answers with the job's
//! numbers in the Prometheus text format (OpenMetrics if the scraper's `Accept` asks for
//! it), one request per connection (`Connection: close`), on one thread of its own. It
//! stops when the job ends (its handle joined or dropped) or when it is stopped or dropped.
//!
//! A scrape reads the shards' atomics and never waits for a shard, so a slow scraper costs
//! the job nothing. A connection that sends no complete request within two seconds is
//! closed; requests larger than 8 KiB are refused.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::live::LiveMetrics;
use super::prometheus::{encode, Format};
use crate::error::{Error, Result};

/// How often the accepting thread looks whether the job ended.
const POLL: Duration = Duration::from_millis(20);
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// A running metrics endpoint (see [`JobController::serve_metrics`](crate::JobController::serve_metrics)).
/// It stops by itself once the job ended; [`MetricsServer::stop`] or dropping it stops it
/// earlier. Either way the listening socket is closed when it returns.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `live`'s numbers labelled `job` until the job ends.
    pub(crate) fn start(
        addr: impl ToSocketAddrs,
        live: Arc<LiveMetrics>,
        job: String,
    ) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|source| Error::MetricsEndpoint {
            what: "bind the metrics address",
            source,
        })?;
        let addr = listener
            .local_addr()
            .and_then(|a| listener.set_nonblocking(true).map(|()| a))
            .map_err(|source| Error::MetricsEndpoint {
                what: "set up the metrics listener",
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rill-metrics".into())
            .spawn(move || serve(listener, &live, &job, &stopping))
            .map_err(|source| Error::MetricsEndpoint {
                what: "start the metrics thread",
                source,
            })?;
        tracing::info!(%addr, "serving metrics on http://{addr}/metrics");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system chose, if `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True once it stopped serving (the job ended, or it was stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, JoinHandle::is_finished)
    }

    /// Stops serving and closes the socket; returns once it is closed.
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// Waits until it stopped by itself, when the job ended.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn serve(listener: TcpListener, live: &LiveMetrics, job: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) && !live.ended() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, live, job) {
                    tracing::debug!(%peer, error = %e, "metrics request failed");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
    tracing::debug!("metrics endpoint closed");
}

/// The parts of a request the endpoint looks at.
struct Request {
    method: String,
    path: String,
    accept: Option<String>,
}

/// Reads the request head (up to the blank line).
fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the request was complete",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value.trim().to_string());
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        accept,
    }))
}

fn answer(mut stream: TcpStream, live: &LiveMetrics, job: &str) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let Some(request) = read_request(&mut stream)? else {
        return respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            b"",
        );
    };
    let path = request.path.split('?').next().unwrap_or("");
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        );
    }
    if path != "/metrics" {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"see /metrics\n",
        );
    }
    let format = Format::from_accept(request.accept.as_deref());
    let body = encode(&live.snapshot(), job, format);
    let status = "200 OK";
    write_response(
        &mut stream,
        status,
        format.content_type(),
        body.as_bytes(),
        !head_only,
    )
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    write_response(stream, status, content_type, body, true)
}

/// Writes a response; a `HEAD` request's leaves the body out (its length still says how
/// long it would be).
fn write_response(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()
}
