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
use crate::context::ShardInfo;
use crate::coordinator::{JobCheckpoints, ShardStart, Start};
use crate::error::{Error, Result};
use crate::exchange::channel::{channel, ChannelLimits, ChannelMetrics};
use crate::graph::{instantiate, Dataflow, GraphDesc, ShardEndpoints};
use crate::instrument::DroppedRecords;
use crate::metrics::{ChannelReport, JobReport, OperatorReport};
use crate::park::ShardWaker;
use crate::preflight;
use crate::shard::executor::{self, ExecutorSettings};
use crate::shard::Shard;

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
    threads: Vec<JoinHandle<Result<Vec<u64>>>>,
    channels: Vec<ChannelMeta>,
    node_names: Vec<String>,
    /// Per shard, per node: records dropped.
    dropped: Vec<Vec<DroppedRecords>>,
    started: Instant,
    checkpoints: Option<JobCheckpoints>,
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
        let mesh = Mesh::new(&graph, shards, self.limits());
        let node_names = graph.node_names();
        let dropped: Vec<Vec<DroppedRecords>> = (0..shards)
            .map(|_| {
                node_names
                    .iter()
                    .map(|_| DroppedRecords::default())
                    .collect()
            })
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
            let endpoints = mesh.endpoints.into_iter().zip(dropped.iter().cloned());
            self.start_shards(graph, endpoints, &mesh.wakers, shard_start, &abort)?
        };
        let checkpoints = match start {
            Some(s) => {
                let c = self
                    .config
                    .checkpointing
                    .as_ref()
                    .expect("checkpointing is on");
                match s.run(mesh.wakers, abort.clone(), c.interval, c.retain) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
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
            dropped,
            started,
            checkpoints,
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
        shards: impl ExactSizeIterator<Item = (ShardEndpoints, Vec<DroppedRecords>)>,
        wakers: &[Arc<ShardWaker>],
        checkpoint: Option<ShardStart>,
        abort: &Arc<AtomicBool>,
    ) -> Result<Vec<JoinHandle<Result<Vec<u64>>>>> {
        let graph = Arc::new(graph);
        let (count, cores) = (shards.len(), core_ids());
        let mut threads = Vec::with_capacity(count);
        for (index, (endpoints, dropped)) in shards.enumerate() {
            let settings = ExecutorSettings {
                cpu: self.config.pin.then(|| cores[index % cores.len()]),
                io_memory: self.config.io_memory,
            };
            let (graph, waker, abort2) = (graph.clone(), wakers[index].clone(), abort.clone());
            let (limits, clock) = (self.limits(), self.config.clock);
            let spin_before_park = self.config.spin_before_park;
            let checkpoint = checkpoint.clone();
            let info = ShardInfo {
                index,
                shards: count,
            };
            let thread = executor::spawn(index, settings, abort.clone(), move || async move {
                waker.register_current();
                let checkpoint = checkpoint.map(|c| c.open(info));
                let built = instantiate(
                    &graph,
                    info,
                    endpoints,
                    limits,
                    clock,
                    checkpoint.clone(),
                    dropped,
                );
                match built {
                    Ok(plan) => {
                        Shard::new(info, plan, waker, abort2, spin_before_park, checkpoint)
                            .run()
                            .await
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

    /// The latest completed checkpoint (0: none yet; `None` without checkpointing).
    pub fn latest_checkpoint(&self) -> Option<u64> {
        self.checkpoints.as_ref().map(JobCheckpoints::latest)
    }

    /// Waits for the job to end. If any shard failed, returns that failure (the other
    /// shards stop as soon as they notice).
    pub fn join(self) -> Result<JobReport> {
        let mut counts = Vec::with_capacity(self.threads.len());
        let mut first_error: Option<Error> = None;
        for (shard, thread) in self.threads.into_iter().enumerate() {
            let outcome = thread.join().unwrap_or_else(|panic| {
                Err(Error::OperatorPanicked {
                    operator: "<runtime>".into(),
                    shard,
                    message: crate::error::panic_message(&*panic),
                })
            });
            match outcome {
                Ok(c) => counts.push(c),
                Err(e) => {
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
        }
        let checkpoints = match self.checkpoints {
            Some(c) => Some(c.finish(first_error.is_none())?),
            None => None,
        };
        if let Some(e) = first_error {
            return Err(e);
        }
        let elapsed = self.started.elapsed();
        let operators = self
            .node_names
            .iter()
            .enumerate()
            .map(|(node, name)| OperatorReport {
                name: name.clone(),
                records: counts.iter().map(|c| c[node]).collect(),
                dropped: (self.dropped.iter())
                    .take(counts.len())
                    .map(|d| d[node].get())
                    .collect(),
            })
            .collect();
        let channels = channel_reports(&self.channels);
        Ok(JobReport {
            elapsed,
            operators,
            channels,
            checkpoints,
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
