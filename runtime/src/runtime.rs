//! Starting shards and running a job on them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

use crate::config::{core_ids, Config};
use crate::error::{Error, Result};
use crate::exchange::channel::{channel, ChannelLimits, ChannelMetrics, ShardWaker};
use crate::graph::{Dataflow, ShardInfo};
use crate::metrics::{ChannelReport, JobReport, OperatorReport};
use crate::preflight;
use crate::shard::{Shard, ShardEndpoints, ShardSettings};

/// Runs dataflows on a set of pinned shards.
///
/// Creating a runtime checks the configuration and the machine (io_uring, locked-memory
/// limit) and reports what to fix. Each [`Runtime::run`] starts one glommio executor per
/// shard, runs the job to completion and stops them.
#[derive(Debug, Clone)]
pub struct Runtime {
    config: Config,
}

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
    started: Instant,
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
            return Err(Error::Graph("the dataflow has no operators".into()));
        }
        let shards = self.config.shard_count();
        let limits = ChannelLimits {
            batch_bytes: self.config.batch_bytes,
            batch_records: self.config.batch_records,
            credits: self.config.credits,
            flush_delay: self.config.flush_delay,
        };
        let wakers: Vec<Arc<ShardWaker>> = (0..shards).map(|_| Arc::default()).collect();
        let mut endpoints: Vec<ShardEndpoints> = (0..shards)
            .map(|_| ShardEndpoints {
                tx: Vec::new(),
                rx: Vec::new(),
            })
            .collect();
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
        let node_names = graph.nodes.iter().map(|n| n.name.clone()).collect();
        let graph = Arc::new(graph);
        let abort = Arc::new(AtomicBool::new(false));
        let cores = core_ids();
        let started = Instant::now();
        let mut threads = Vec::with_capacity(shards);
        for (index, shard_endpoints) in endpoints.into_iter().enumerate() {
            let graph = graph.clone();
            let waker = wakers[index].clone();
            let abort = abort.clone();
            let config = self.config.clone();
            let placement = if config.pin {
                Placement::Fixed(cores[index % cores.len()])
            } else {
                Placement::Unbound
            };
            let thread = std::thread::Builder::new()
                .name(format!("rill-shard-{index}"))
                .spawn(move || {
                    let executor = match make_executor(index, placement, &config) {
                        Ok(e) => e,
                        Err(e) => {
                            abort.store(true, std::sync::atomic::Ordering::SeqCst);
                            return Err(e);
                        }
                    };
                    executor.run(async move {
                        waker.register_current();
                        let settings = ShardSettings {
                            limits,
                            spin_before_park: config.spin_before_park,
                            clock: config.clock,
                        };
                        let info = ShardInfo { index, shards };
                        let shard =
                            Shard::build(&graph, info, shard_endpoints, &settings, waker, abort);
                        shard.run().await
                    })
                })
                .map_err(|e| Error::ExecutorStart {
                    shard: index,
                    message: format!("could not spawn its thread: {e}"),
                })?;
            threads.push(thread);
        }
        Ok(JobHandle {
            threads,
            channels,
            node_names,
            started,
        })
    }
}

/// Creates the shard's executor on the calling thread, retrying for a while: locked memory
/// of executors that just stopped is released asynchronously by the kernel.
fn make_executor(shard: usize, placement: Placement, config: &Config) -> Result<LocalExecutor> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut backoff = Duration::from_millis(5);
    loop {
        let attempt = LocalExecutorBuilder::new(placement.clone())
            .name("rill-shard")
            .io_memory(config.io_memory)
            .ring_depth(64)
            .make();
        match attempt {
            Ok(e) => return Ok(e),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::ExecutorStart {
                    shard,
                    message: e.to_string(),
                })
            }
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
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
                    message: panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
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
            })
            .collect();
        let channels = channel_reports(&self.channels);
        Ok(JobReport {
            elapsed,
            operators,
            channels,
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
