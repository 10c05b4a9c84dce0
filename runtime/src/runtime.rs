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
use crate::instrument::NodeStats;
use crate::job_checkpoints::{JobCheckpoints, ShardStart, Start};
use crate::metrics::{ChannelReport, JobEnd, JobReport, OperatorReport};
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

#[derive(Debug)]
struct ChannelMeta {
    exchange: String,
    from: usize,
    to: usize,
    metrics: Arc<ChannelMetrics>,
}

/// A running job.
pub struct JobHandle {
    threads: Vec<JoinHandle<Result<()>>>,
    channels: Vec<ChannelMeta>,
    node_names: Vec<String>,
    /// Per shard, per node: records, drops and input watermarks, live.
    stats: Vec<Vec<Arc<NodeStats>>>,
    started: Instant,
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
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("shards", &self.threads.len())
            .field("operators", &self.node_names)
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
            let endpoints = mesh.endpoints.into_iter().zip(stats.iter().cloned());
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
        let controller = JobController {
            control: control.clone(),
            wakers: mesh.wakers.clone(),
            // At-most-once takes no checkpoints (leases only).
            checkpointing: (self.config.checkpointing.as_ref())
                .is_some_and(|c| c.guarantee != crate::checkpoint::Guarantee::AtMostOnce),
        };
        let checkpoints = match start {
            Some(s) => {
                let c = self
                    .config
                    .checkpointing
                    .as_ref()
                    .expect("checkpointing is on");
                match s.run(mesh.wakers, abort.clone(), c.interval, c.retain, control) {
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
        Ok(JobHandle {
            threads,
            channels: mesh.channels,
            node_names,
            stats,
            started,
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
    /// `shards` gives each shard its channel ends and its nodes' dropped-record counters.
    fn start_shards(
        &self,
        graph: GraphDesc,
        shards: impl ExactSizeIterator<Item = (ShardEndpoints, Vec<Arc<NodeStats>>)>,
        wakers: &[Arc<ShardWaker>],
        checkpoint: Option<ShardStart>,
        abort: &Arc<AtomicBool>,
        control: &Arc<JobControl>,
    ) -> Result<Vec<JoinHandle<Result<()>>>> {
        let graph = Arc::new(graph);
        let (count, cores) = (shards.len(), core_ids());
        let mut threads = Vec::with_capacity(count);
        for (index, (endpoints, stats)) in shards.enumerate() {
            let settings = ExecutorSettings {
                cpu: self.config.pin.then(|| cores[index % cores.len()]),
                io_memory: self.config.io_memory,
            };
            let (graph, waker, abort2) = (graph.clone(), wakers[index].clone(), abort.clone());
            let (limits, clock) = (self.limits(), self.config.clock);
            let spin_before_park = self.config.spin_before_park;
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
        channel_reports(&self.channels)
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

    /// What the job's report would hold now, while it runs: records and drops per
    /// operator and shard, each operator's input watermark per shard, the channels'
    /// counters and the checkpoints so far (`end` is [`JobEnd::Running`] until the job
    /// ended). Reads atomics the shards write once per batch; never waits for a shard.
    pub fn metrics(&self) -> JobReport {
        JobReport {
            elapsed: self.started.elapsed(),
            operators: self.operator_reports(),
            channels: channel_reports(&self.channels),
            checkpoints: self.checkpoints.as_ref().map(JobCheckpoints::stats),
            end: JobEnd::Running,
        }
    }

    /// Per operator: its records, drops and input watermark on every shard, now.
    fn operator_reports(&self) -> Vec<OperatorReport> {
        (self.node_names.iter().enumerate())
            .map(|(node, name)| OperatorReport {
                name: name.clone(),
                records: self.stats.iter().map(|s| s[node].records()).collect(),
                dropped: self.stats.iter().map(|s| s[node].dropped().get()).collect(),
                watermarks: self.stats.iter().map(|s| s[node].watermark()).collect(),
            })
            .collect()
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
        let elapsed = self.started.elapsed();
        let operators = self.operator_reports();
        let channels = channel_reports(&self.channels);
        Ok(JobReport {
            elapsed,
            operators,
            channels,
            checkpoints,
            end,
        })
    }
}

fn channel_reports(channels: &[ChannelMeta]) -> Vec<ChannelReport> {
    channels
        .iter()
        .map(|c| ChannelReport {
            exchange: c.exchange.clone(),
            from: c.from,
            to: c.to,
            batches: c.metrics.batches(),
            records: c.metrics.records(),
            bytes: c.metrics.bytes(),
            backpressured: c.metrics.backpressured(),
        })
        .collect()
}
