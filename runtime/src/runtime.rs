//! Starting shards and running a job on them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

use rkyv::util::AlignedVec;

use crate::checkpoint::{
    find_latest, local, CheckpointStats, Checkpointing, Coordinator, CoordinatorThread, Guarantee,
    JobHook,
};
use crate::config::{core_ids, Config};
use crate::context::ShardInfo;
use crate::error::{Error, Result};
use crate::exchange::channel::{channel, ChannelLimits, ChannelMetrics};
use crate::graph::Dataflow;
use crate::metrics::{ChannelReport, JobReport, OperatorReport};
use crate::park::ShardWaker;
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
    checkpoints: Option<JobCheckpoints>,
}

struct JobCheckpoints {
    coordinator: CoordinatorThread,
    hooks: Vec<Arc<dyn JobHook>>,
    /// The job had already completed (its directory holds the final manifest): nothing ran.
    already_finished: Option<u64>,
}

/// What the checkpoint directory gives a starting job.
struct Start {
    coord: Arc<Coordinator>,
    restore: Option<(u64, Arc<Vec<AlignedVec<16>>>)>,
    first_epoch: u64,
    already_finished: Option<u64>,
    stats: CheckpointStats,
}

/// Reads the checkpoint directory: the checkpoint (or, at-most-once, the leases) to
/// restore, after validating it; runs the job hooks' `before_start`.
fn prepare_checkpoints(
    c: &Checkpointing,
    shards: usize,
    node_names: &[String],
    hooks: &[Arc<dyn JobHook>],
) -> Result<Start> {
    let fail = |m: String| Error::Checkpoint(m);
    std::fs::create_dir_all(&c.dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", c.dir.display())))?;
    let t0 = Instant::now();
    let mut stats = CheckpointStats::default();
    let (base, first_epoch, restore, restored, finished) = if c.guarantee == Guarantee::AtMostOnce {
        let (run, files) = crate::checkpoint::store_leases(&c.dir).map_err(fail)?;
        let restore = if files.is_empty() {
            None
        } else {
            let merged = crate::checkpoint::merge_leases(&files, run).map_err(fail)?;
            Some((run, Arc::new(vec![merged])))
        };
        let restored = restore.as_ref().map(|_| run);
        (run + 1, run + 1, restore, restored, None)
    } else {
        let recovery = find_latest(&c.dir);
        stats.skipped = recovery.skipped.clone();
        match recovery.loaded {
            None if !recovery.skipped.is_empty() => {
                let reasons: Vec<String> = recovery
                    .skipped
                    .iter()
                    .map(|(d, r)| format!("{}: {r}", d.display()))
                    .collect();
                return Err(fail(format!(
                    "no usable checkpoint in {}: {}. Starting over would repeat committed \
                     output; delete the directory (and the job's output) to start from scratch",
                    c.dir.display(),
                    reasons.join("; ")
                )));
            }
            None => (0, 1, None, None, None),
            Some(loaded) => {
                let m = &loaded.manifest;
                if m.nodes != node_names {
                    return Err(fail(format!(
                        "checkpoint {} in {} was taken by a different dataflow (operators {:?}, \
                         this job has {:?})",
                        m.id,
                        c.dir.display(),
                        m.nodes,
                        node_names
                    )));
                }
                let id = m.id;
                let finished = m.finished.then_some(id);
                crate::checkpoint::remove_after(&c.dir, id);
                (
                    id,
                    id + 1,
                    Some((id, Arc::new(loaded.files))),
                    Some(id),
                    finished,
                )
            }
        }
    };
    stats.restored_from = restored;
    stats.restore_load = t0.elapsed();
    for hook in hooks {
        hook.before_start(restored, c.guarantee).map_err(fail)?;
    }
    let coord = Arc::new(Coordinator::new(
        shards,
        c.guarantee,
        c.dir.clone(),
        node_names.to_vec(),
        base,
    ));
    Ok(Start {
        coord,
        restore,
        first_epoch,
        already_finished: finished,
        stats,
    })
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
        let node_names: Vec<String> = graph.nodes.iter().map(|n| n.name.clone()).collect();
        let start = match &self.config.checkpointing {
            Some(c) => Some(prepare_checkpoints(c, shards, &node_names, &graph.hooks)?),
            None => None,
        };
        let abort = Arc::new(AtomicBool::new(false));
        if let Some(Start {
            already_finished: Some(id),
            coord,
            stats,
            ..
        }) = &start
        {
            *coord.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats.clone();
            let coordinator = CoordinatorThread::idle(coord.clone());
            return Ok(JobHandle {
                threads: Vec::new(),
                channels,
                node_names,
                started: Instant::now(),
                checkpoints: Some(JobCheckpoints {
                    coordinator,
                    hooks: graph.hooks.clone(),
                    already_finished: Some(*id),
                }),
            });
        }
        let hooks = graph.hooks.clone();
        let graph = Arc::new(graph);
        let cores = core_ids();
        let started = Instant::now();
        let mut threads = Vec::with_capacity(shards);
        for (index, shard_endpoints) in endpoints.into_iter().enumerate() {
            let graph = graph.clone();
            let waker = wakers[index].clone();
            let abort = abort.clone();
            let config = self.config.clone();
            let checkpoint = start
                .as_ref()
                .map(|s| (s.coord.clone(), s.first_epoch, s.restore.clone()));
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
                        if let Some((coord, first_epoch, restore)) = checkpoint {
                            let restore = restore.map(|(id, files)| {
                                crate::checkpoint::assign(&files, id, index, shards)
                            });
                            local::install(index, shards, coord, first_epoch, restore);
                        }
                        let result = match Shard::build(
                            &graph,
                            info,
                            shard_endpoints,
                            &settings,
                            waker,
                            abort.clone(),
                        ) {
                            Ok(shard) => shard.run().await,
                            Err(e) => {
                                abort.store(true, std::sync::atomic::Ordering::SeqCst);
                                Err(e)
                            }
                        };
                        local::uninstall();
                        result
                    })
                })
                .map_err(|e| Error::ExecutorStart {
                    shard: index,
                    message: format!("could not spawn its thread: {e}"),
                })?;
            threads.push(thread);
        }
        let checkpoints = match start {
            Some(s) => {
                *s.coord.stats.lock().unwrap_or_else(|e| e.into_inner()) = s.stats;
                let interval = self.config.checkpointing.as_ref().and_then(|c| c.interval);
                let retain = self.config.checkpointing.as_ref().map_or(1, |c| c.retain);
                let coordinator =
                    CoordinatorThread::start(s.coord, wakers, abort.clone(), interval, retain)
                        .map_err(|e| Error::Checkpoint(format!("cannot start its thread: {e}")));
                match coordinator {
                    Ok(coordinator) => Some(JobCheckpoints {
                        coordinator,
                        hooks,
                        already_finished: None,
                    }),
                    Err(e) => {
                        abort.store(true, std::sync::atomic::Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(JobHandle {
            threads,
            channels,
            node_names,
            started,
            checkpoints,
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

    /// Asks for a checkpoint now (with checkpointing on; otherwise does nothing).
    pub fn checkpoint_now(&self) {
        if let Some(c) = &self.checkpoints {
            crate::checkpoint::request_now(&c.coordinator.coord);
        }
    }

    /// The latest completed checkpoint (0: none yet; `None` without checkpointing).
    pub fn latest_checkpoint(&self) -> Option<u64> {
        self.checkpoints.as_ref().map(|c| {
            c.coordinator
                .coord
                .completed
                .load(std::sync::atomic::Ordering::SeqCst)
        })
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
        let checkpoints = match self.checkpoints {
            Some(c) => Some(finish_checkpoints(c, first_error.is_none())?),
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

/// Stops the coordinator; after a clean end writes the final manifest and runs the
/// hooks' `after_finish`.
fn finish_checkpoints(c: JobCheckpoints, clean: bool) -> Result<CheckpointStats> {
    let coord = c.coordinator.coord.clone();
    c.coordinator.stop();
    if let Some(message) = coord
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(Error::Checkpoint(message));
    }
    let stats = coord
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !clean {
        return Ok(stats);
    }
    let last = match c.already_finished {
        Some(id) => id,
        None if coord.guarantee == Guarantee::AtMostOnce => {
            coord.completed.load(std::sync::atomic::Ordering::SeqCst)
        }
        None => coord.finish().map_err(|e| {
            Error::Checkpoint(format!(
                "could not write the final manifest in {}: {e}",
                coord.dir.display()
            ))
        })?,
    };
    for hook in &c.hooks {
        hook.after_finish(last).map_err(Error::Checkpoint)?;
    }
    Ok(stats)
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
