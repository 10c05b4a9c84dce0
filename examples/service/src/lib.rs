//! A rate-limiting service with rill embedded: copy it as the start of your own.
//!
//! Clients connect over TCP and send one client id per line; the service answers each
//! line with `<line number> <client> ok <tokens left>` or `<line number> <client>
//! limited`. Each client has a token bucket (`burst` tokens, refilled at `per_minute`
//! tokens a minute) kept in rill's keyed state, on the shard that owns the client.
//!
//! The shape, for any request/response service:
//!
//! 1. [`Dataflow::keyed_input`] gives the job's input and an [`InputHandle`]; requests go
//!    straight to the shard that owns their key, so the keyed operator behind it
//!    (`assume_keyed_by`) needs no exchange.
//! 2. [`Stream::subscribe`](rill_runtime::Stream::subscribe) gives the answers as they
//!    are produced. One task reads them and hands each to its connection.
//! 3. Connections send with [`InputHandle::send_async`], which waits (without blocking
//!    the async runtime's thread) while the job is backpressured.
//!
//! rill takes no async runtime; this example uses tokio, but any executor works.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rill_operators::prelude::*;
use rill_operators::{ProcessContext, ProcessFunction};
use rill_runtime::{Config, Dataflow, InputHandle, JobHandle, Runtime, Subscription};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One line from a client.
#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Request {
    /// The connection it came on.
    pub conn: u64,
    /// Its line number on that connection (from 1).
    pub line: u64,
    /// The client id (the key).
    pub client: String,
    /// When it arrived, ms since the Unix epoch.
    pub at_ms: i64,
}

/// The answer to one request.
#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Answer {
    /// The connection to answer on.
    pub conn: u64,
    /// The request's line number.
    pub line: u64,
    /// The client.
    pub client: String,
    /// Tokens left after the request, if it was allowed.
    pub allowed: Option<u64>,
}

/// How many requests a client may make.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Tokens a bucket holds (and starts with).
    pub burst: u64,
    /// Tokens added per minute.
    pub per_minute: u64,
}

/// The token bucket of every client on one shard: state per key, in rill's keyed state.
struct TokenBucket(Limits);

impl ProcessFunction<String, Request> for TokenBucket {
    /// Milli-tokens in the bucket, and when it was last refilled (`None`: a new client).
    type State = Option<(u64, i64)>;
    type Out = Answer;

    fn process(&mut self, r: Request, cx: &mut ProcessContext<'_, String, Self::State, Answer>) {
        let Limits { burst, per_minute } = self.0;
        let (milli, last) = cx.state().unwrap_or((burst * 1000, r.at_ms));
        let elapsed = (r.at_ms - last).max(0) as u64;
        let milli = (milli + elapsed * per_minute / 60).min(burst * 1000);
        let (milli, allowed) = match milli.checked_sub(1000) {
            Some(left) => (left, Some(left / 1000)),
            None => (milli, None),
        };
        *cx.state() = Some((milli, r.at_ms.max(last)));
        cx.emit(Answer {
            conn: r.conn,
            line: r.line,
            client: r.client,
            allowed,
        });
    }

    fn on_timer(&mut self, _: i64, _: &mut ProcessContext<'_, String, Self::State, Answer>) {}
}

/// Where each connection's answers go.
type Connections = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Answer>>>>;

/// A running service: its job, and what its connections share.
pub struct Service {
    job: JobHandle,
    input: InputHandle<Request>,
    answers: Option<Subscription<Answer>>,
    connections: Connections,
}

impl Service {
    /// Starts the job on `shards` shards.
    pub fn start(limits: Limits, shards: usize) -> Result<Service, rill_runtime::Error> {
        let mut df = Dataflow::new();
        let (requests, input) = df.keyed_input("requests", |r: &Request| r.client.clone());
        let answers = requests
            .assume_keyed_by(|r: &Request| r.client.clone())
            .process("token bucket", move |_| TokenBucket(limits))
            .subscribe("answers", 4096);
        let config = Config::default().shards(shards).pin(false);
        let job = Runtime::new(config)?.spawn(df)?;
        Ok(Service {
            job,
            input,
            answers: Some(answers),
            connections: Arc::default(),
        })
    }

    /// Serves clients from `listener` until `shutdown` resolves; then stops the job
    /// (what was sent is answered first) and returns its report.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<rill_runtime::JobReport, rill_runtime::Error> {
        let mut answers = self.answers.take().expect("served once");
        let connections = self.connections.clone();
        // One task hands every answer to its connection.
        let dispatch = tokio::spawn(async move {
            while let Some(a) = answers.recv_async().await {
                let tx = connections.lock().unwrap().get(&a.conn).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(a);
                }
            }
        });
        tokio::pin!(shutdown);
        let mut next_conn = 0u64;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    next_conn += 1;
                    let (tx, rx) = mpsc::unbounded_channel();
                    self.connections.lock().unwrap().insert(next_conn, tx);
                    let (input, connections) = (self.input.clone(), self.connections.clone());
                    tokio::spawn(connection(next_conn, socket, input, rx, connections));
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.input);
        let report = tokio::task::spawn_blocking(move || self.job.stop())
            .await
            .expect("the job's thread");
        let _ = dispatch.await;
        report
    }
}

/// Reads a connection's lines into the job and writes its answers back; once the client
/// closed its side, waits until every line it sent was answered.
async fn connection(
    conn: u64,
    socket: TcpStream,
    input: InputHandle<Request>,
    mut answers: mpsc::UnboundedReceiver<Answer>,
    connections: Connections,
) {
    let (read, mut write) = socket.into_split();
    let (lines_tx, mut lines_rx) = tokio::sync::oneshot::channel::<u64>();
    let writer = tokio::spawn(async move {
        let (mut written, mut total) = (0u64, None);
        while total.map_or(true, |t| written < t) {
            tokio::select! {
                a = answers.recv() => {
                    let Some(a) = a else { break };
                    let line = match a.allowed {
                        Some(left) => format!("{} {} ok {left}\n", a.line, a.client),
                        None => format!("{} {} limited\n", a.line, a.client),
                    };
                    if write.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                    written += 1;
                }
                t = &mut lines_rx, if total.is_none() => total = Some(t.unwrap_or(0)),
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    let mut line = 0;
    while let Ok(Some(client)) = lines.next_line().await {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let request = Request {
            conn,
            line: line + 1,
            client: client.trim().to_string(),
            at_ms,
        };
        if input.send_async(request).await.is_err() {
            break; // the job stopped
        }
        line += 1;
    }
    drop(input);
    let _ = lines_tx.send(line);
    let _ = writer.await;
    connections.lock().unwrap().remove(&conn);
}
