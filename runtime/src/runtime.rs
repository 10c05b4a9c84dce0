//! Starting shards and running a job on them.
//!
//! [`Runtime::spawn`] reads as its steps: check the dataflow, lay the exchange mesh
//! (channels between every pair of shards, per exchange), read the checkpoint directory,
//! start one thread per shard (which builds the shard's operator instances and runs its
//! loop), then start the checkpoint coordinator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::config::{core_ids, Config};
use crate::control::JobControl;
use crate::error::{Error, Result};
use crate::exchange::channel::{channel, ChannelLimits, ChannelMetrics};
use crate::graph::{instantiate, Dataflow, GraphDesc, ShardEndpoints, ShardLinks};
use crate::instrument::{NodeStats, ShardProfile, ShardStats};
use crate::job_checkpoints::{JobCheckpoints, ShardStart, Start};
use crate::metrics::live::{ChannelMeta, LiveMetrics};
use crate::metrics::prometheus::{self, Format};
use crate::metrics::{ChannelReport, JobEnd, JobReport, MetricsServer};
use crate::park::ShardWaker;
use crate::preflight;
use crate::shard::executor::{self, ExecutorSettings};
use crate::shard::Shard;
use crate::shard_info::ShardInfo;
use crate::source::input::InputBinding;

/// Runs dataflows on a set of pinned shards.
///
/// Creating a runtime checks the configuration and the machine (io_uring, locked-memory
/// limit) and reports what to fix. Each [`Runtime::run`] starts one glommio executor per
/// shard, runs the job to completion and stops them.
#[derive(Debug, Clone)]
pub struct Runtime {
    config: Config,
}

/// A running job.
pub struct JobHandle {
    threads: Vec<JoinHandle<Result<()>>>,
    /// The job's live numbers (what reports, snapshots and the metrics endpoint read).
    live: Arc<LiveMetrics>,
    checkpoints: Option<JobCheckpoints>,
    controller: JobController,
    inputs: Vec<Arc<dyn InputBinding>>,
    /// The job's span: its shards', coordinator's and end's events are inside it.
    span: tracing::Span,
}

/// Asks a running job to stop, cancel or stop with a savepoint, from any thread (a
/// signal handler's, say) while another waits in [`JobHandle::join`]. Each request
/// returns at once; `join` returns once the job ended.
#[derive(Clone)]
pub struct JobController {
    control: Arc<JobControl>,
    wakers: Vec<Arc<ShardWaker>>,
    checkpointing: bool,
    live: Arc<LiveMetrics>,
}

impl std::fmt::Debug for JobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobController")
            .field("control", &self.control)
            .finish()
    }
}

impl JobController {
    /// Drains the job: every source ends (an input handle's queue is processed first;
    /// senders get errors from then on), records in flight are processed, the final
    /// watermark fires what is left, sinks see their end and commit.
    pub fn stop(&self) {
        self.control.request_stop();
        self.wake();
    }

    /// Ends the job at once: each shard returns at its next loop turn; records in flight
    /// are not processed and sinks do not commit.
    pub fn cancel(&self) {
        self.control.request_cancel();
        self.wake();
    }

    /// Stops the job with a savepoint: sources stop taking input (an input handle's queue
    /// is processed first), a final aligned checkpoint that holds all of the job's state
    /// itself (no incremental chain) is taken, sinks commit it, and the shards end without
    /// an end of stream. A later run with the same checkpoint directory resumes from it,
    /// onto any shard count. Fails without checkpointing.
    pub fn stop_with_savepoint(&self) -> Result<()> {
        if !self.checkpointing {
            return Err(Error::NoCheckpointing);
        }
        self.control.request_savepoint();
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        for w in &self.wakers {
            w.wake();
        }
    }

    /// The job's numbers now: what [`JobHandle::metrics`] returns, from any thread.
    pub fn metrics(&self) -> JobReport {
        self.live.snapshot()
    }

    /// The job's numbers now in the Prometheus text format (`format`), every series
    /// labelled `job="<job>"`: what an embedding service answers a scrape with from its own
    /// HTTP server (with [`Format::content_type`] as the `Content-Type`). See
    /// `docs/metrics.md` for the metrics.
    pub fn prometheus_text(&self, job: &str, format: Format) -> String {
        prometheus::encode(&self.live.snapshot(), job, format)
    }

    /// Serves the job's metrics over HTTP at `addr` (`GET /metrics`, Prometheus text format
    /// or OpenMetrics as the scraper's `Accept` asks) on a thread of its own, until the job
    /// ends (its handle joined or dropped) or the returned server is stopped or dropped.
    /// `addr` may give port 0; [`MetricsServer::local_addr`] says which port it got.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use rill_runtime::{Config, Dataflow, Runtime};
    ///
    /// let mut df = Dataflow::new();
    /// let (numbers, input) = df.input::<u64>("numbers");
    /// numbers.discard("sink");
    /// let job = Runtime::new(Config::default().shards(1).pin(false)).unwrap().spawn(df).unwrap();
    /// let server = job.controller().serve_metrics("127.0.0.1:0", "example").unwrap();
    /// let mut scrape = std::net::TcpStream::connect(server.local_addr()).unwrap();
    /// scrape.write_all(b"GET /metrics HTTP/1.1\r\nHost: rill\r\n\r\n").unwrap();
    /// let mut response = String::new();
    /// scrape.read_to_string(&mut response).unwrap();
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(response.contains("rill_operator_records_in_total{job=\"example\""));
    /// drop(input);
    /// job.join().unwrap();
    /// server.join(); // it closed with the job
    /// ```
    pub fn serve_metrics(
        &self,
        addr: impl std::net::ToSocketAddrs,
        job: &str,
    ) -> Result<MetricsServer> {
        MetricsServer::start(addr, self.live.clone(), job.to_string())
    }
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("shards", &self.threads.len())
            .field("operators", &self.live.node_names)
            .field("checkpointing", &self.checkpoints.is_some())
            .finish()
    }
}

/// The channels of every exchange between every pair of shards.
struct Mesh {
    /// Per shard: its channel ends.
    endpoints: Vec<ShardEndpoints>,
    /// Per shard: how to wake it.
    wakers: Vec<Arc<ShardWaker>>,
    channels: Vec<ChannelMeta>,
}

impl Mesh {
    fn new(graph: &GraphDesc, shards: usize, limits: ChannelLimits) -> Mesh {
        let wakers: Vec<Arc<ShardWaker>> = (0..shards).map(|_| Arc::default()).collect();
        let mut endpoints: Vec<ShardEndpoints> =
            (0..shards).map(|_| ShardEndpoints::default()).collect();
        let mut channels = Vec::new();
        for exchange in &graph.exchanges {
            for e in &mut endpoints {
                e.tx.push(Vec::with_capacity(shards));
                e.rx.push(Vec::with_capacity(shards));
            }
            for from in 0..shards {
                for to in 0..shards {
                    let metrics = Arc::new(ChannelMetrics::default());
                    let (tx, rx) = channel(
                        limits,
                        metrics.clone(),
                        wakers[from].clone(),
                        wakers[to].clone(),
                    );
                    endpoints[from]
                        .tx
                        .last_mut()
                        .expect("pushed above")
                        .push(tx);
                    endpoints[to].rx.last_mut().expect("pushed above").push(rx);
                    channels.push(ChannelMeta {
                        exchange: exchange.name.clone(),
                        from,
                        to,
                        metrics,
                    });
                }
            }
        }
        Mesh {
            endpoints,
            wakers,
            channels,
        }
    }
}

impl Runtime {
    /// Checks `config` and this machine, and returns a runtime ready to run jobs.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        preflight::check(&config)?;
        Ok(Runtime { config })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `dataflow` until every source is exhausted and every sink has seen the end
    /// of its input.
    pub fn run(&self, dataflow: Dataflow) -> Result<JobReport> {
        self.spawn(dataflow)?.join()
    }

    /// Starts `dataflow` and returns at once; the handle reads live channel counters and
    /// waits for the end.
    pub fn spawn(&self, dataflow: Dataflow) -> Result<JobHandle> {
        static JOBS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let span = tracing::info_span!("job", id = JOBS.fetch_add(1, Ordering::Relaxed));
        let entered = span.clone().entered();
        let result = self.spawn_in(dataflow, span);
        if let Err(e) = &result {
            tracing::error!(error = %e, "the job did not start");
        }
        drop(entered);
        result
    }

    fn spawn_in(&self, dataflow: Dataflow, span: tracing::Span) -> Result<JobHandle> {
        let graph = dataflow.into_graph();
        if graph.nodes.is_empty() {
            return Err(Error::Graph {
                problem: "the dataflow has no operators",
            });
        }
        if let Some((operator, problem)) = graph.problems.first() {
            return Err(Error::InvalidOperator {
                operator: operator.clone(),
                problem: problem.clone(),
            });
        }
        let shards = self.config.shard_count();
        tracing::info!(
            shards,
            operators = graph.nodes.len(),
            checkpoints = ?self.config.checkpointing.as_ref().map(|c| c.dir()),
            "job starting"
        );
        let mesh = Mesh::new(&graph, shards, self.limits());
        let inputs = graph.inputs.clone();
        let input_capacity = self.config.credits * self.config.batch_records;
        for input in &inputs {
            input.bind(&mesh.wakers, input_capacity);
        }
        let control = Arc::new(JobControl::default());
        let node_names = graph.node_names();
        let stats: Vec<Vec<Arc<NodeStats>>> = (0..shards)
            .map(|_| node_names.iter().map(|_| Arc::default()).collect())
            .collect();
        let shard_stats: Vec<Arc<ShardStats>> = (0..shards).map(|_| Arc::default()).collect();
        let start = match &self.config.checkpointing {
            Some(c) => Some(Start::prepare(
                c,
                shards,
                &graph.operator_ids(),
                graph.hooks.clone(),
            )?),
            None => None,
        };
        let abort = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = if start.as_ref().is_some_and(Start::already_finished) {
            // The directory says the job completed: nothing is left to run.
            Vec::new()
        } else {
            let shard_start = start.as_ref().map(Start::for_shard);
            let endpoints = (mesh.endpoints.into_iter())
                .zip(stats.iter().cloned().zip(shard_stats.iter().cloned()));
            let started = self.start_shards(
                graph,
                endpoints,
                &mesh.wakers,
                shard_start,
                &abort,
                &control,
            );
            match started {
                Ok(threads) => threads,
                Err(e) => {
                    inputs.iter().for_each(|i| i.close());
                    return Err(e);
                }
            }
        };
        let wakers = mesh.wakers.clone();
        let checkpoints = match start {
            Some(s) => {
                let c = self
                    .config
                    .checkpointing
                    .as_ref()
                    .expect("checkpointing is on");
                match s.run(
                    mesh.wakers,
                    abort.clone(),
                    c.interval,
                    c.retain,
                    control.clone(),
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        inputs.iter().for_each(|i| i.close());
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let live = Arc::new(LiveMetrics {
            node_names,
            nodes: stats,
            shards: shard_stats,
            channels: mesh.channels,
            started,
            checkpoints: checkpoints.as_ref().map(JobCheckpoints::stats_reader),
            event_time_now: self.config.event_time_now.clone(),
            profiled: self.config.profile,
            ended: Default::default(),
        });
        let controller = JobController {
            control: control.clone(),
            wakers,
            // At-most-once takes no checkpoints (leases only).
            checkpointing: (self.config.checkpointing.as_ref())
                .is_some_and(|c| c.guarantee != crate::checkpoint::Guarantee::AtMostOnce),
            live: live.clone(),
        };
        Ok(JobHandle {
            threads,
            live,
            checkpoints,
            controller,
            inputs,
            span,
        })
    }

    fn limits(&self) -> ChannelLimits {
        ChannelLimits {
            batch_bytes: self.config.batch_bytes,
            batch_records: self.config.batch_records,
            credits: self.config.credits,
            flush_delay: self.config.flush_delay,
        }
    }

    /// Starts one thread per shard: it creates the shard's executor, installs its part of
    /// the job's checkpointing, builds the shard's operator instances and runs its loop.
    /// `shards` gives each shard its channel ends, its nodes' live numbers and its own.
    fn start_shards(
        &self,
        graph: GraphDesc,
        shards: impl ExactSizeIterator<Item = (ShardEndpoints, (Vec<Arc<NodeStats>>, Arc<ShardStats>))>,
        wakers: &[Arc<ShardWaker>],
        checkpoint: Option<ShardStart>,
        abort: &Arc<AtomicBool>,
        control: &Arc<JobControl>,
    ) -> Result<Vec<JoinHandle<Result<()>>>> {
        let graph = Arc::new(graph);
        let (count, cores) = (shards.len(), core_ids());
        let mut threads = Vec::with_capacity(count);
        for (index, (endpoints, (stats, shard_stats))) in shards.enumerate() {
            let settings = ExecutorSettings {
                cpu: self.config.pin.then(|| cores[index % cores.len()]),
                io_memory: self.config.io_memory,
            };
            let (graph, waker, abort2) = (graph.clone(), wakers[index].clone(), abort.clone());
            let (limits, clock) = (self.limits(), self.config.clock);
            let spin_before_park = self.config.spin_before_park;
            let profile = self.config.profile;
            let checkpoint = checkpoint.clone();
            let control = control.clone();
            let info = ShardInfo {
                index,
                shards: count,
            };
            let span = tracing::info_span!("shard", index);
            let thread = executor::spawn(index, settings, abort.clone(), move || async move {
                let _span = span.entered();
                waker.register_current();
                let checkpoint = checkpoint.map(|c| c.open(info));
                let links = ShardLinks {
                    waker: waker.clone(),
                    control: control.clone(),
                    stats,
                    profile: std::rc::Rc::new(ShardProfile::new(profile)),
                    shard_stats,
                };
                let built = instantiate(
                    &graph,
                    info,
                    endpoints,
                    limits,
                    clock,
                    checkpoint.clone(),
                    links,
                );
                match built {
                    Ok(plan) => {
                        let shard = Shard::new(
                            info,
                            plan,
                            waker,
                            abort2,
                            spin_before_park,
                            checkpoint,
                            control,
                        );
                        shard.run().await
                    }
                    Err(e) => {
                        abort2.store(true, Ordering::SeqCst);
                        Err(e)
                    }
                }
            });
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    abort.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(threads)
    }
}

impl JobHandle {
    /// The per-channel counters now (they keep changing while the job runs).
    pub fn channel_stats(&self) -> Vec<ChannelReport> {
        self.live.channel_reports()
    }

    /// True once every shard has stopped.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Asks for a checkpoint now (with checkpointing on; otherwise does nothing).
    pub fn checkpoint_now(&self) {
        if let Some(c) = &self.checkpoints {
            c.request_now();
        }
    }

    /// Asks for a self-contained checkpoint now (a savepoint the job keeps running after):
    /// the next checkpoint to start copies all of its state whole and needs no older file.
    /// Returns its id (it is complete once [`JobHandle::latest_checkpoint`] reaches it), or
    /// `None` without checkpointing.
    pub fn savepoint_now(&self) -> Option<u64> {
        self.checkpoints
            .as_ref()
            .map(JobCheckpoints::request_full_now)
    }

    /// The latest completed checkpoint (0: none yet; `None` without checkpointing).
    pub fn latest_checkpoint(&self) -> Option<u64> {
        self.checkpoints.as_ref().map(JobCheckpoints::latest)
    }

    /// What the job's report would hold now, while it runs: records in and out, drops,
    /// busy time, input watermark and watermark lag per operator and shard, where each
    /// shard's time went, the channels' counters and the checkpoints so far (`end` is
    /// [`JobEnd::Running`] until the job ended). Reads atomics the shards write once per
    /// batch or loop turn; never waits for a shard.
    pub fn metrics(&self) -> JobReport {
        self.live.snapshot()
    }

    /// [`JobController::serve_metrics`]: serves this job's metrics over HTTP at `addr`
    /// until the job ends.
    pub fn serve_metrics(
        &self,
        addr: impl std::net::ToSocketAddrs,
        job: &str,
    ) -> Result<MetricsServer> {
        self.controller.serve_metrics(addr, job)
    }

    /// A controller to stop, cancel or savepoint this job from another thread.
    pub fn controller(&self) -> JobController {
        self.controller.clone()
    }

    /// Drains the job (see [`JobController::stop`]) and waits for its end.
    pub fn stop(self) -> Result<JobReport> {
        self.controller.stop();
        self.join()
    }

    /// Cancels the job (see [`JobController::cancel`]) and waits for its end.
    pub fn cancel(self) -> Result<JobReport> {
        self.controller.cancel();
        self.join()
    }

    /// Stops the job with a savepoint (see [`JobController::stop_with_savepoint`]) and
    /// waits for its end; the report's [`JobReport::end`] names the savepoint.
    pub fn stop_with_savepoint(self) -> Result<JobReport> {
        self.controller.stop_with_savepoint()?;
        self.join()
    }

    /// Waits for the job to end. If any shard failed, returns that failure (the other
    /// shards stop as soon as they notice).
    pub fn join(self) -> Result<JobReport> {
        let span = self.span.clone();
        let _entered = span.enter();
        let result = self.join_in();
        match &result {
            Ok(r) => tracing::info!(end = ?r.end, elapsed = ?r.elapsed, "job ended"),
            Err(e) => tracing::error!(error = %e, "job failed"),
        }
        result
    }

    fn join_in(mut self) -> Result<JobReport> {
        let mut first_error: Option<Error> = None;
        for (shard, thread) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            let outcome = thread.join().unwrap_or_else(|panic| {
                Err(Error::OperatorPanicked {
                    operator: "<runtime>".into(),
                    shard,
                    message: crate::error::panic_message(&*panic),
                })
            });
            if let Err(e) = outcome {
                let replace = match &first_error {
                    None => true,
                    Some(Error::Aborted { .. }) => !matches!(e, Error::Aborted { .. }),
                    Some(_) => false,
                };
                if replace {
                    first_error = Some(e);
                }
            }
        }
        for input in &self.inputs {
            input.close();
        }
        self.live.end();
        let control = &self.controller.control;
        let end = if control.cancelled() {
            JobEnd::Cancelled
        } else if control.stopping_at() > 0 && first_error.is_none() {
            JobEnd::Savepoint(control.stopping_at())
        } else {
            JobEnd::Finished
        };
        let checkpoints = match self.checkpoints.take() {
            // A cancelled job, or one stopped at a savepoint, did not finish: its
            // directory must not say so.
            Some(c) => Some(c.finish(first_error.is_none() && end == JobEnd::Finished)?),
            None => None,
        };
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(self.live.report(checkpoints, end))
    }
}

impl Drop for JobHandle {
    /// A dropped handle's job can no longer be joined: its metrics endpoints close.
    fn drop(&mut self) {
        self.live.end();
    }
}
