//! Describing a dataflow.
//!
//! A [`Dataflow`] is built once, on any thread, from typed [`Stream`] handles: sources,
//! operators and sinks. Each operator is given as a factory that runs on every shard and
//! returns that shard's instance (which need not be `Send`), so the description itself is
//! `Send` and the instances own their state on their pinned core (timely's builder ->
//! worker pattern). Consecutive operators are chained into direct calls; an
//! [`Stream::exchange`] edge moves records between shards.
//!
//! ```
//! use rill_runtime::{Config, Dataflow, Partitioning, Runtime};
//!
//! let mut df = Dataflow::new();
//! let out = df
//!     .vec_source("numbers", (0u64..100).collect())
//!     .exchange(Partitioning::by_key(|n: &u64| n % 10))
//!     .collect("out");
//! let report = Runtime::new(Config::default().shards(2).pin(false))
//!     .unwrap()
//!     .run(df)
//!     .unwrap();
//! let mut got = out.take();
//! got.sort();
//! assert_eq!(got, (0..100).collect::<Vec<_>>());
//! assert_eq!(report.operator("out").unwrap().total(), 100);
//! ```

mod build;
mod context;
mod node;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::data::{Data, ExchangeData};
use crate::error::Failure;
use crate::exchange::route::Partitioning;
use crate::exchange::TypedExchange;
use crate::operator::binary::{BinaryState, LeftInput, RightInput};
use crate::operator::union::{UnionInput, UnionState};
use crate::operator::{BinaryOperator, Operator};
use crate::progress::Progress;
use crate::push::{Output, Push, SourceOutput};
use crate::sink::subscription::{subscription, Subscription};
use crate::sink::{CollectSink, Collected, DiscardSink, Sink, SinkOperator};
use crate::source::input::{input, InputBinder, InputHandle, KeyHash};
use crate::source::{strided, IterSource, Source};

pub(crate) use build::{instantiate, ShardEndpoints, ShardLinks};
pub use context::ShardContext;
pub(crate) use node::{Built, ExchangeDesc, GraphDesc, InputDesc, NodeBuilder, NodeDesc, StreamId};

/// A dataflow under construction. Hand it to [`Runtime::run`](crate::Runtime::run).
#[derive(Default)]
pub struct Dataflow {
    graph: Rc<RefCell<GraphDesc>>,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.graph.borrow();
        f.debug_struct("Dataflow")
            .field("operators", &g.node_names())
            .field(
                "exchanges",
                &g.exchanges.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A typed stream of records in a [`Dataflow`]: the output of a source or operator.
pub struct Stream<T> {
    graph: Rc<RefCell<GraphDesc>>,
    id: StreamId,
    _records: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.graph.borrow();
        let name = g.nodes.get(self.id.node).map_or("?", |n| n.name.as_str());
        f.debug_struct("Stream")
            .field("operator", &name)
            .field("port", &self.id.port)
            .finish()
    }
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            graph: self.graph.clone(),
            id: self.id,
            _records: PhantomData,
        }
    }
}

impl Dataflow {
    /// An empty dataflow.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_graph(self) -> GraphDesc {
        std::mem::take(&mut *self.graph.borrow_mut())
    }

    fn stream<T>(&self, node: usize, port: usize) -> Stream<T> {
        Stream {
            graph: self.graph.clone(),
            id: StreamId { node, port },
            _records: PhantomData,
        }
    }

    /// A source: `make` runs on every shard and returns that shard's [`Source`].
    pub fn source<T, S, F>(&mut self, name: &str, make: F) -> Stream<T>
    where
        T: Data,
        S: Source<T> + 'static,
        F: Fn(&ShardContext) -> S + Send + Sync + 'static,
    {
        self.try_source(name, move |shard| Ok(make(shard)))
    }

    /// [`Dataflow::source`] whose factory can fail (e.g. connecting to a broker): an error
    /// fails the job's start, naming the source and the shard
    /// ([`Error::OperatorBuild`](crate::Error::OperatorBuild)).
    pub fn try_source<T, S, F>(&mut self, name: &str, make: F) -> Stream<T>
    where
        T: Data,
        S: Source<T> + 'static,
        F: Fn(&ShardContext) -> Result<S, Failure> + Send + Sync + 'static,
    {
        let node = self.graph.borrow_mut().add(NodeDesc {
            name: name.to_string(),
            inputs: Vec::new(),
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let Some(source) = b.made(make(b.context)) else {
                    return Built::Inputs(Vec::new());
                };
                let out = SourceOutput::new(b.output::<T>(0));
                Built::Source(b.source_head(source, out))
            }),
        });
        self.stream(node, 0)
    }

    /// A source that drains an iterator on every shard: `make` gets the shard and returns
    /// that shard's part of the input.
    pub fn iter_source<T, I, F>(&mut self, name: &str, make: F) -> Stream<T>
    where
        T: Data,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
        F: Fn(crate::ShardInfo) -> I + Send + Sync + 'static,
    {
        self.source(name, move |ctx| {
            IterSource::new(make(ctx.info()).into_iter(), ctx.info())
        })
    }

    /// A source fed by the host program while the job runs: records sent through the
    /// returned [`InputHandle`] (and its clones) go to the shards round robin. See
    /// [`crate::input`] for backpressure, watermarks, the end of the input and its
    /// guarantee.
    ///
    /// ```
    /// use rill_runtime::{Config, Dataflow, Runtime};
    ///
    /// let mut df = Dataflow::new();
    /// let (numbers, input) = df.input::<u64>("numbers");
    /// let mut results = numbers.subscribe("out", 1024);
    /// let job = Runtime::new(Config::default().shards(2).pin(false)).unwrap().spawn(df).unwrap();
    /// for n in 0..100 {
    ///     input.send(n).unwrap();
    /// }
    /// drop(input); // the input ends: the job finishes once everything was read
    /// let mut got: Vec<u64> = results.by_ref().collect();
    /// got.sort();
    /// assert_eq!(got, (0..100).collect::<Vec<_>>());
    /// job.join().unwrap();
    /// ```
    pub fn input<T>(&mut self, name: &str) -> (Stream<T>, InputHandle<T>)
    where
        T: Data + Send,
    {
        self.add_input(name, None)
    }

    /// [`Dataflow::input`] whose records go straight to the shard that owns their key
    /// (`key(record)`, placed as a key-hash exchange places it): a keyed operator behind
    /// it needs no exchange (`rill_operators`' `assume_keyed_by` with the same key). One
    /// handle's records of one key keep their order.
    pub fn keyed_input<T, K, F>(&mut self, name: &str, key: F) -> (Stream<T>, InputHandle<T>)
    where
        T: Data + Send,
        K: std::hash::Hash,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let hash = move |r: &T| crate::keys::hash_key(&key(r));
        self.add_input(name, Some(Arc::new(hash)))
    }

    fn add_input<T: Data + Send>(
        &mut self,
        name: &str,
        by_key: Option<KeyHash<T>>,
    ) -> (Stream<T>, InputHandle<T>) {
        let (handle, binder) = input(name, by_key);
        let source: InputBinder<T> = binder.share();
        self.graph.borrow_mut().inputs.push(Arc::new(binder));
        let stream = self.source(name, move |ctx| source.source(ctx.info()));
        (stream, handle)
    }

    /// Adds a job-level checkpoint hook (see [`JobHook`](crate::checkpoint::JobHook)).
    pub fn on_job(&mut self, hook: Arc<dyn crate::checkpoint::JobHook>) {
        self.graph.borrow_mut().hooks.push(hook);
    }

    /// A source over a vector, split across shards (shard `i` of `n` emits elements
    /// `i, i+n, i+2n, ...`).
    pub fn vec_source<T>(&mut self, name: &str, data: Vec<T>) -> Stream<T>
    where
        T: Data + Send + Sync,
    {
        let data = Arc::new(data);
        self.iter_source(name, move |s: crate::ShardInfo| {
            strided(data.clone(), s.index, s.shards)
        })
    }
}

impl<T: Data> Stream<T> {
    fn add_node(&self, desc: NodeDesc) -> usize {
        self.graph.borrow_mut().add(desc)
    }

    fn derived<U>(&self, node: usize, port: usize) -> Stream<U> {
        Stream {
            graph: self.graph.clone(),
            id: StreamId { node, port },
            _records: PhantomData,
        }
    }

    /// A one-input, one-output operator chained to this stream: `make` builds the
    /// instance of each shard.
    pub fn unary<U, Op, F>(&self, name: &str, make: F) -> Stream<U>
    where
        U: Data,
        Op: Operator<T, Out = Output<U>> + 'static,
        F: Fn(&ShardContext) -> Op + Send + Sync + 'static,
    {
        self.try_unary(name, move |shard| Ok(make(shard)))
    }

    /// [`Stream::unary`] whose factory can fail (e.g. opening a file or a connection): an
    /// error fails the job's start, naming the operator and the shard
    /// ([`Error::OperatorBuild`](crate::Error::OperatorBuild)).
    ///
    /// ```
    /// use rill_runtime::{
    ///     Config, Dataflow, Error, Failure, OpResult, Operator, OperatorState, Output, Runtime,
    /// };
    ///
    /// struct Pass;
    /// impl Operator<u64> for Pass {
    ///     type Out = Output<u64>;
    ///     const STATE: OperatorState = OperatorState::Stateless;
    ///     fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Output<u64>) -> OpResult {
    ///         out.give_vec(batch);
    ///         Ok(())
    ///     }
    /// }
    /// let mut df = Dataflow::new();
    /// df.vec_source("numbers", vec![1u64, 2, 3])
    ///     .try_unary("connect", |shard| match shard.index {
    ///         0 => Ok(Pass),
    ///         _ => Err(Failure::new("no route to the service")),
    ///     })
    ///     .discard("out");
    /// let runtime = Runtime::new(Config::default().shards(2).pin(false)).unwrap();
    /// let err = runtime.run(df).unwrap_err();
    /// let Error::OperatorBuild { operator, shard, .. } = err else {
    ///     panic!("{err}")
    /// };
    /// assert_eq!((operator.as_str(), shard), ("connect", 1));
    /// ```
    pub fn try_unary<U, Op, F>(&self, name: &str, make: F) -> Stream<U>
    where
        U: Data,
        Op: Operator<T, Out = Output<U>> + 'static,
        F: Fn(&ShardContext) -> Result<Op, Failure> + Send + Sync + 'static,
    {
        let node = self.add_node(NodeDesc {
            name: name.to_string(),
            inputs: vec![InputDesc::forward(self.id)],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let Some(mut op) = b.made(make(b.context)) else {
                    return Built::Inputs(Vec::new());
                };
                let out = b.output::<U>(0);
                b.restore(|s| op.restore(s));
                Built::Inputs(vec![b.unary_input::<T, _>(op, out)])
            }),
        });
        self.derived(node, 0)
    }

    /// A watermark generator chained to this stream: an operator whose output is a
    /// [`SourceOutput`], so that it emits watermarks and idleness of its own in place of its
    /// input's (of which only the final watermark goes on). `rill_operators` builds its
    /// watermark strategies on it.
    pub fn watermark_generator<Op, F>(&self, name: &str, make: F) -> Stream<T>
    where
        Op: Operator<T, Out = SourceOutput<T>> + 'static,
        F: Fn(&ShardContext) -> Op + Send + Sync + 'static,
    {
        let node = self.add_node(NodeDesc {
            name: name.to_string(),
            inputs: vec![InputDesc::forward(self.id)],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let out = SourceOutput::new(b.output::<T>(0));
                let mut op = make(b.context);
                b.restore(|s| op.restore(s));
                Built::Inputs(vec![b.unary_input::<T, _>(op, out)])
            }),
        });
        self.derived(node, 0)
    }

    /// A one-input operator with a main and a side output (e.g. a split, or late data).
    pub fn unary_split<A, B, Op, F>(&self, name: &str, make: F) -> (Stream<A>, Stream<B>)
    where
        A: Data,
        B: Data,
        Op: Operator<T, Out = (Output<A>, Output<B>)> + 'static,
        F: Fn(&ShardContext) -> Op + Send + Sync + 'static,
    {
        self.try_unary_split(name, move |shard| Ok(make(shard)))
    }

    /// [`Stream::unary_split`] whose factory can fail (see [`Stream::try_unary`]).
    pub fn try_unary_split<A, B, Op, F>(&self, name: &str, make: F) -> (Stream<A>, Stream<B>)
    where
        A: Data,
        B: Data,
        Op: Operator<T, Out = (Output<A>, Output<B>)> + 'static,
        F: Fn(&ShardContext) -> Result<Op, Failure> + Send + Sync + 'static,
    {
        let node = self.add_node(NodeDesc {
            name: name.to_string(),
            inputs: vec![InputDesc::forward(self.id)],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let Some(mut op) = b.made(make(b.context)) else {
                    return Built::Inputs(Vec::new());
                };
                let outs = (b.output::<A>(0), b.output::<B>(1));
                b.restore(|s| op.restore(s));
                Built::Inputs(vec![b.unary_input::<T, _>(op, outs)])
            }),
        });
        (self.derived(node, 0), self.derived(node, 1))
    }

    /// A two-input operator over this stream (left) and `other` (right).
    pub fn binary<B, U, Op, F>(&self, other: &Stream<B>, name: &str, make: F) -> Stream<U>
    where
        B: Data,
        U: Data,
        Op: BinaryOperator<T, B, Out = Output<U>> + 'static,
        F: Fn(&ShardContext) -> Op + Send + Sync + 'static,
    {
        self.try_binary(other, name, move |shard| Ok(make(shard)))
    }

    /// [`Stream::binary`] whose factory can fail (see [`Stream::try_unary`]).
    pub fn try_binary<B, U, Op, F>(&self, other: &Stream<B>, name: &str, make: F) -> Stream<U>
    where
        B: Data,
        U: Data,
        Op: BinaryOperator<T, B, Out = Output<U>> + 'static,
        F: Fn(&ShardContext) -> Result<Op, Failure> + Send + Sync + 'static,
    {
        let node = self.add_node(NodeDesc {
            name: name.to_string(),
            inputs: vec![InputDesc::forward(self.id), InputDesc::forward(other.id)],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let Some(op) = b.made(make(b.context)) else {
                    return Built::Inputs(Vec::new());
                };
                b.declared(Op::STATE);
                let out = b.output::<U>(0);
                let state = BinaryState::new(op, out, b.snapshots());
                b.restore(|s| state.borrow_mut().restore(s));
                Built::Inputs(vec![
                    b.input::<T>(LeftInput(state.clone())),
                    b.input::<B>(RightInput(state)),
                ])
            }),
        });
        self.derived(node, 0)
    }

    /// Merges this stream with `others` into one stream; its watermark is the minimum
    /// over the merged streams that are not idle.
    pub fn union(&self, others: &[Stream<T>]) -> Stream<T> {
        let mut inputs = vec![InputDesc::forward(self.id)];
        inputs.extend(others.iter().map(|s| InputDesc::forward(s.id)));
        let n = inputs.len();
        let node = self.add_node(NodeDesc {
            name: "union".to_string(),
            inputs,
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let out = b.output::<T>(0);
                let state = Rc::new(RefCell::new(UnionState::new(out, n, b.checkpoint.clone())));
                Built::Inputs(
                    (0..n)
                        .map(|input| {
                            b.input::<T>(UnionInput {
                                state: state.clone(),
                                input,
                            })
                        })
                        .collect(),
                )
            }),
        });
        self.derived(node, 0)
    }

    /// Gives the operator that produces this stream the id `uid`, by which checkpoints find
    /// its state (by default its name). Needed only where two stateful operators share a
    /// name; an id must stay the same across the versions of a job whose checkpoints it
    /// should restore.
    ///
    /// ```
    /// use rill_runtime::{Dataflow, Partitioning};
    ///
    /// let mut df = Dataflow::new();
    /// let numbers = df.vec_source("numbers", vec![1u64, 2, 3]).uid("numbers-v1");
    /// numbers.exchange(Partitioning::Rebalance).discard("sink");
    /// ```
    pub fn uid(&self, uid: &str) -> Stream<T> {
        self.graph
            .borrow_mut()
            .uids
            .insert(self.id.node, uid.to_string());
        self.clone()
    }

    /// Reports that operator `operator`, being built on this stream, is misconfigured:
    /// [`Runtime::run`](crate::Runtime::run) then refuses the dataflow with
    /// [`Error::InvalidOperator`](crate::Error::InvalidOperator) before any shard starts.
    /// For operator libraries, whose builders return streams rather than results.
    pub fn invalid(&self, operator: &str, problem: impl Into<String>) {
        self.graph
            .borrow_mut()
            .problems
            .push((operator.to_string(), problem.into()));
    }

    /// Adds a job-level checkpoint hook (see [`JobHook`](crate::checkpoint::JobHook)), e.g.
    /// from a sink's builder, which has only the stream.
    pub fn on_job(&self, hook: Arc<dyn crate::checkpoint::JobHook>) {
        self.graph.borrow_mut().hooks.push(hook);
    }

    /// A sink: `make` builds each shard's [`Sink`].
    pub fn sink<S, F>(&self, name: &str, make: F)
    where
        S: Sink<T> + 'static,
        F: Fn(&ShardContext) -> S + Send + Sync + 'static,
    {
        self.try_sink(name, move |shard| Ok(make(shard)))
    }

    /// [`Stream::sink`] whose factory can fail (e.g. connecting to a broker): see
    /// [`Stream::try_unary`].
    pub fn try_sink<S, F>(&self, name: &str, make: F)
    where
        S: Sink<T> + 'static,
        F: Fn(&ShardContext) -> Result<S, Failure> + Send + Sync + 'static,
    {
        self.add_node(NodeDesc {
            name: name.to_string(),
            inputs: vec![InputDesc::forward(self.id)],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let Some(sink) = b.made(make(b.context)) else {
                    return Built::Inputs(Vec::new());
                };
                let mut op = SinkOperator::new(sink, b.checkpoint.as_deref());
                b.blocking.push(op.driver::<T>(b.node));
                b.restore(|s| op.restore(s));
                Built::Inputs(vec![b.unary_input::<T, _>(op, ())])
            }),
        });
    }

    /// A sink that collects every record; read them from the handle after the job ends.
    pub fn collect(&self, name: &str) -> Collected<T>
    where
        T: Send,
    {
        let collected = Collected::new(0);
        let target = collected.clone();
        self.sink(name, move |shard| CollectSink {
            target: target.clone(),
            shard: shard.index,
        });
        collected
    }

    /// Ends this stream in a sink whose records the host reads while the job runs,
    /// through a queue of `capacity` records shared by every shard. A slow reader slows
    /// the job; dropping the subscription makes the sink discard (and count) what reaches
    /// it. See [`crate::subscription`].
    pub fn subscribe(&self, name: &str, capacity: usize) -> Subscription<T>
    where
        T: Send,
    {
        let (sub, side) = subscription(name, capacity);
        self.add_node(NodeDesc {
            name: name.to_string(),
            inputs: vec![InputDesc::forward(self.id)],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let info = b.context.info();
                let dropped = b.context.dropped_records();
                let sink = side.sink(info.index, info.shards, b.waker.clone(), dropped);
                b.blocking.push((sink.blocked(), sink.driver()));
                Built::Inputs(vec![b.unary_input::<T, _>(sink, ())])
            }),
        });
        sub
    }

    /// A sink that drops every record; the job report counts them.
    pub fn discard(&self, name: &str) {
        self.sink(name, |_| DiscardSink);
    }
}

impl<T: ExchangeData> Stream<T> {
    /// Moves records between shards as `partitioning` says (forward keeps them in place).
    ///
    /// The job report names the exchange (its channels, and its node among the operators)
    /// after its partitioning and the operators it feeds, e.g. `key-hash -> count`
    /// (`exchange(key-hash)` while it feeds none); [`Stream::exchange_named`] gives it a
    /// name of your own.
    ///
    /// ```
    /// use rill_runtime::{Config, Dataflow, Partitioning, Runtime};
    ///
    /// let mut df = Dataflow::new();
    /// df.vec_source("numbers", (0u64..100).collect())
    ///     .exchange(Partitioning::by_key(|n: &u64| n % 10))
    ///     .discard("sink");
    /// let report = Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
    /// assert!(report.channels.iter().all(|c| c.exchange == "key-hash -> sink"));
    /// assert_eq!(report.operator("key-hash -> sink").unwrap().total(), 100);
    /// ```
    pub fn exchange(&self, partitioning: Partitioning<T>) -> Stream<T> {
        self.add_exchange(None, partitioning)
    }

    /// [`Stream::exchange`], named `name` in the job report.
    ///
    /// ```
    /// use rill_runtime::{Config, Dataflow, Partitioning, Runtime};
    ///
    /// let mut df = Dataflow::new();
    /// df.vec_source("numbers", (0u64..100).collect())
    ///     .exchange_named("spread", Partitioning::Rebalance)
    ///     .discard("sink");
    /// let report = Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
    /// assert_eq!(report.channels.len(), 4); // 2 x 2 channels
    /// assert!(report.channels.iter().all(|c| c.exchange == "spread"));
    /// ```
    pub fn exchange_named(&self, name: &str, partitioning: Partitioning<T>) -> Stream<T> {
        self.add_exchange(Some(name), partitioning)
    }

    fn add_exchange(&self, name: Option<&str>, partitioning: Partitioning<T>) -> Stream<T> {
        if let Partitioning::Forward = partitioning {
            return self.clone();
        }
        let (label, named) = (partitioning.name(), name.is_some());
        let name = name.map_or_else(|| format!("exchange({label})"), str::to_string);
        let node = self.graph.borrow().nodes.len();
        let exchange = self.graph.borrow_mut().add_exchange(ExchangeDesc {
            name: name.clone(),
            partitioning: label,
            named,
            consumers: Vec::new(),
            node,
            edge: Box::new(TypedExchange { partitioning }),
        });
        let node = self.add_node(NodeDesc {
            name,
            inputs: vec![InputDesc {
                stream: self.id,
                exchange: Some(exchange),
            }],
            build: Box::new(move |b: &mut NodeBuilder<'_>| {
                let out = b.output::<T>(0);
                Built::Inputs(vec![b.input::<T>(PassThrough(out))])
            }),
        });
        self.derived(node, 0)
    }
}

/// The operator behind an exchange node: hands records and progress on unchanged.
struct PassThrough<T: Clone>(Output<T>);

impl<T: Clone> Push<T> for PassThrough<T> {
    fn push(&mut self, batch: &mut Vec<T>) -> crate::OpResult {
        self.0.give_vec(batch);
        self.0.flush()
    }
    fn progress(&mut self, progress: Progress) -> crate::OpResult {
        self.0.send(progress)
    }
}
