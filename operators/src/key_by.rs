//! `key_by`: partitions a stream by key, so that all records of a key reach the shard that
//! owns the key's state, and rolling (per-record) aggregates over it.

use std::cell::OnceCell;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{table_codec, Codec, SharedKeyedState};
use rill_runtime::{
    Data, ExchangeData, OpResult, Operator, OperatorState, Output, Partitioning, StateData, Stream,
};

use crate::summable::Summable;

/// Groups a stream by key.
pub trait KeyBy<T> {
    /// Sends every record to the shard owning `key(record)` (see
    /// `rill_runtime::exchange::route` for the placement rule). The rolling aggregates
    /// of [`KeyedStream`] (e.g. [`KeyedStream::count`]), windows, joins and process
    /// functions run on the result. The exchange is made when first used; a window
    /// aggregation that can pre-aggregate sends partial accumulators through it instead of
    /// the records (see [`KeyedStream`]).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("numbers", (0..100u32).collect())
    ///         .key_by(|x: &u32| x % 5)
    ///         .stream()
    ///         .collect("out")
    /// });
    /// let per_shard = out.take_per_shard();
    /// for key in 0..5 {
    ///     // All records of a key are on one shard.
    ///     let holders = per_shard.iter().filter(|s| s.iter().any(|x| x % 5 == key));
    ///     assert_eq!(holders.count(), 1);
    /// }
    /// ```
    fn key_by<K, F>(&self, key: F) -> KeyedStream<T, K>
    where
        K: Data + Hash + Eq,
        F: Fn(&T) -> K + Send + Sync + 'static;

    /// [`KeyBy::key_by`] through an exchange named `name` in the job report. Without a
    /// name, the report calls the exchange after the operators it feeds (`key-hash ->
    /// count`); a name helps where that is ambiguous or long.
    ///
    /// ```
    /// use rill_operators::prelude::*;
    /// use rill_runtime::{Config, Dataflow, Runtime};
    ///
    /// let mut df = Dataflow::new();
    /// let words = df.vec_source("words", vec!["a".to_string(), "b".into(), "a".into()]);
    /// words.key_by_named("by word", |w: &String| w.clone()).count("count").discard("out");
    /// words.key_by(|w: &String| w.len()).count("lengths").discard("lengths out");
    /// let report = Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
    /// let mut exchanges: Vec<&str> = report.channels.iter().map(|c| c.exchange.as_str()).collect();
    /// exchanges.dedup();
    /// assert_eq!(exchanges, ["by word", "key-hash -> lengths"]);
    /// ```
    fn key_by_named<K, F>(&self, name: &str, key: F) -> KeyedStream<T, K>
    where
        K: Data + Hash + Eq,
        F: Fn(&T) -> K + Send + Sync + 'static;

    /// Declares that the stream is already partitioned as [`KeyBy::key_by`] would place
    /// it (every record is on the shard that `rill_runtime::shard_of_key(&key(record),
    /// shards)` names, e.g. a source that reads its own partition), so no exchange is
    /// needed (Flink's `reinterpretAsKeyedStream`). A record on the wrong shard would
    /// split its key's state, so only use this when the placement is guaranteed.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_runtime::shard_of_key;
    /// use std::collections::BTreeMap;
    ///
    /// // Each shard reads only the records whose key it owns, so no exchange is needed.
    /// let out = run_on_two_shards(|df| {
    ///     df.iter_source("own keys", |shard| {
    ///         (0..10u32).filter(move |x| shard_of_key(&(x % 3), shard.shards) == shard.index)
    ///     })
    ///     .assume_keyed_by(|x: &u32| x % 3)
    ///     .count("count")
    ///     .collect("out")
    /// });
    /// let counts: BTreeMap<u32, u64> = out.take().into_iter().collect();
    /// assert_eq!(counts, BTreeMap::from([(0, 4), (1, 3), (2, 3)]));
    /// ```
    fn assume_keyed_by<K, F>(&self, key: F) -> KeyedStream<T, K>
    where
        K: Data + Hash + Eq,
        F: Fn(&T) -> K + Send + Sync + 'static;
}

/// A stream partitioned by key.
///
/// A rolling aggregate emits `(key, aggregate so far)` for every input record. The state
/// of a key lives on exactly one shard, so no combining across shards is needed; a user
/// [`KeyedStream::reduce`] function is nevertheless expected to be associative and
/// commutative, because records of one key from different producer shards interleave in
/// an unspecified order. A key's updates leave its shard in the order they were made, so
/// the last update of a key that a collecting sink received is the key's final aggregate
/// (the examples of the aggregates read it that way).
///
/// The key exchange is made when an operator first needs the partitioned records
/// ([`KeyedStream::stream`], a rolling aggregate, a join, a process function, most window
/// operators), once per keyed stream and its clones. A window aggregation that
/// pre-aggregates on each shard sends partial accumulators through an exchange of its own
/// instead (docs/windows.md), so the records never cross shards.
pub struct KeyedStream<T, K> {
    /// The records as they are, before the key exchange.
    input: Stream<T>,
    /// The key exchange: made on first use, shared by clones.
    exchanged: Rc<OnceCell<Stream<T>>>,
    /// Makes the key exchange of a stream (`None`: the stream is already partitioned, see
    /// [`KeyBy::assume_keyed_by`]).
    exchange: Option<ExchangeFn<T>>,
    /// The name given to [`KeyBy::key_by_named`].
    name: Option<Rc<str>>,
    key: KeyFn<T, K>,
}

/// A key extractor, shared by an operator's instances.
pub(crate) type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Makes the key exchange of a stream.
type ExchangeFn<T> = Rc<dyn Fn(&Stream<T>) -> Stream<T>>;

impl<T, K> std::fmt::Debug for KeyedStream<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream")
            .field("input", &self.input)
            .field("exchanged", &self.exchanged.get())
            .field("key", &std::any::type_name::<K>())
            .finish_non_exhaustive()
    }
}

impl<T, K> Clone for KeyedStream<T, K> {
    fn clone(&self) -> Self {
        KeyedStream {
            input: self.input.clone(),
            exchanged: self.exchanged.clone(),
            exchange: self.exchange.clone(),
            name: self.name.clone(),
            key: self.key.clone(),
        }
    }
}

impl<T: ExchangeData> KeyBy<T> for Stream<T> {
    fn key_by<K, F>(&self, key: F) -> KeyedStream<T, K>
    where
        K: Data + Hash + Eq,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream::exchanged_by(self, None, Arc::new(key))
    }

    fn key_by_named<K, F>(&self, name: &str, key: F) -> KeyedStream<T, K>
    where
        K: Data + Hash + Eq,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream::exchanged_by(self, Some(name.into()), Arc::new(key))
    }

    fn assume_keyed_by<K, F>(&self, key: F) -> KeyedStream<T, K>
    where
        K: Data + Hash + Eq,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream {
            input: self.clone(),
            exchanged: Rc::new(OnceCell::from(self.clone())),
            exchange: None,
            name: None,
            key: Arc::new(key),
        }
    }
}

impl<T: ExchangeData, K: Data + Hash + Eq> KeyedStream<T, K> {
    /// `input`, to be sent through a key exchange (named `name`) when first used.
    fn exchanged_by(input: &Stream<T>, name: Option<Rc<str>>, key: KeyFn<T, K>) -> Self {
        let route = key.clone();
        let exchange_name = name.clone();
        let exchange: ExchangeFn<T> = Rc::new(move |stream: &Stream<T>| {
            let route = route.clone();
            key_exchange(stream, exchange_name.as_deref(), move |r: &T| route(r))
        });
        KeyedStream {
            input: input.clone(),
            exchanged: Rc::new(OnceCell::new()),
            exchange: Some(exchange),
            name,
            key,
        }
    }
}

/// The key exchange of `stream` by `key`, named `name` in the job report (or after the
/// operators it feeds).
pub(crate) fn key_exchange<T: ExchangeData, K: Hash>(
    stream: &Stream<T>,
    name: Option<&str>,
    key: impl Fn(&T) -> K + Send + Sync + 'static,
) -> Stream<T> {
    let partitioning = Partitioning::by_key(key);
    match name {
        Some(name) => stream.exchange_named(name, partitioning),
        None => stream.exchange(partitioning),
    }
}

struct RollingOp<T, K, A, F> {
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    fold: F,
    /// Shared with the checkpoint being collected after its barrier (copy-on-write).
    state: SharedKeyedState<K, A>,
    codec: Codec<K, A>,
}

impl<T, K, A, F> Operator<T> for RollingOp<T, K, A, F>
where
    K: Data + Hash + Eq,
    A: Data,
    F: Fn(Option<&A>, T) -> A,
{
    /// Every key's aggregate, incrementally (the keys updated since the last checkpoint).
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.codec.write(&self.state, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.codec.read(&mut self.state.borrow_mut(), state)
    }

    type Out = Output<(K, A)>;
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<(K, A)>) -> OpResult {
        let mut table = self.state.borrow_mut();
        for r in batch.drain(..) {
            let k = (self.key)(&r);
            let next = (self.fold)(table.get(&k), r);
            table.insert(k.clone(), next.clone());
            out.give((k, next));
        }
        Ok(())
    }
}

impl<T: Data, K: Data + Hash + Eq> KeyedStream<T, K> {
    /// The partitioned records (see the example of [`KeyBy::key_by`]). The first call
    /// makes the key exchange.
    pub fn stream(&self) -> &Stream<T> {
        self.exchanged.get_or_init(|| match &self.exchange {
            Some(exchange) => exchange(&self.input),
            None => self.input.clone(),
        })
    }

    /// The records before the key exchange.
    pub(crate) fn input(&self) -> &Stream<T> {
        &self.input
    }

    /// The name of the key exchange, if the stream has one to make (`None`: it is
    /// partitioned already, [`KeyBy::assume_keyed_by`]); `Some(None)` for an exchange
    /// named after the operators it feeds.
    pub(crate) fn exchange_name(&self) -> Option<Option<&str>> {
        self.exchange.as_ref().map(|_| self.name.as_deref())
    }

    /// The key of a record.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let mut df = rill_runtime::Dataflow::new();
    /// let keyed = df.vec_source("pairs", vec![(1u32, 'a')]).key_by(|r: &(u32, char)| r.0);
    /// assert_eq!(keyed.key_of(&(7, 'x')), 7);
    /// ```
    pub fn key_of(&self, record: &T) -> K {
        (self.key)(record)
    }

    pub(crate) fn key_fn(&self) -> KeyFn<T, K> {
        self.key.clone()
    }

    /// A rolling fold: for every record, `f(previous aggregate of its key, record)`
    /// becomes the key's aggregate and is emitted with the key.
    ///
    /// Keys and aggregates must be rkyv-serializable (checked at compile time, like record
    /// types): with checkpointing on, each key's aggregate is written to checkpoints and
    /// restored, onto any shard count (by key group). The other rolling aggregates are
    /// folds and take part in checkpoints the same way.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use std::collections::BTreeMap;
    ///
    /// // (sensor, reading): a running (count, total) per sensor, for its mean.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("readings", vec![(1u32, 10i64), (2, 4), (1, 20), (1, 30)])
    ///         .key_by(|r: &(u32, i64)| r.0)
    ///         .fold("mean", |acc: Option<&(u64, i64)>, r| {
    ///             let (n, total) = acc.copied().unwrap_or((0, 0));
    ///             (n + 1, total + r.1)
    ///         })
    ///         .collect("out")
    /// });
    /// let updates = out.take();
    /// assert_eq!(updates.len(), 4); // one update per record
    /// // A key's updates come in order from its shard: the last one is the final aggregate.
    /// let last: BTreeMap<u32, (u64, i64)> = updates.into_iter().collect();
    /// assert_eq!(last, BTreeMap::from([(1, (3, 60)), (2, (1, 4))]));
    /// ```
    pub fn fold<A, F>(&self, name: &str, f: F) -> Stream<(K, A)>
    where
        A: Data,
        F: Fn(Option<&A>, T) -> A + Clone + Send + Sync + 'static,
        K: StateData,
        A: StateData,
    {
        let key = self.key.clone();
        let codec: Codec<K, A> = table_codec("rolling", 2);
        self.stream().unary(name, move |shard| RollingOp {
            key: key.clone(),
            fold: f.clone(),
            state: shard.keyed_state().into_shared(),
            codec: codec.clone(),
        })
    }

    /// Rolling reduce with an associative, commutative `f`: the first record of a key is
    /// its aggregate, each later one is `f(aggregate, record)`.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use std::collections::BTreeMap;
    ///
    /// // (user, score): each user's best record so far.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("scores", vec![(1u32, 5i64), (2, 1), (1, 7), (1, 6)])
    ///         .key_by(|r: &(u32, i64)| r.0)
    ///         .reduce("best", |best: &(u32, i64), r| if r.1 > best.1 { r } else { *best })
    ///         .collect("out")
    /// });
    /// let last: BTreeMap<u32, (u32, i64)> = out.take().into_iter().collect();
    /// assert_eq!(last, BTreeMap::from([(1, (1, 7)), (2, (2, 1))]));
    /// ```
    pub fn reduce<F>(&self, name: &str, f: F) -> Stream<(K, T)>
    where
        F: Fn(&T, T) -> T + Clone + Send + Sync + 'static,
        K: StateData,
        T: StateData,
    {
        self.fold(name, move |acc: Option<&T>, r| match acc {
            Some(a) => f(a, r),
            None => r,
        })
    }

    /// Rolling count of records per key, as a `u64` (the type of the windowed
    /// [`WindowedStream::count`](crate::window::WindowedStream::count) too).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("words", vec!["a".to_string(), "b".into(), "a".into()])
    ///         .key_by(|w: &String| w.clone())
    ///         .count("count")
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
    /// ```
    pub fn count(&self, name: &str) -> Stream<(K, u64)>
    where
        K: StateData,
    {
        self.fold(name, |acc: Option<&u64>, _| acc.copied().unwrap_or(0) + 1)
    }

    /// Rolling sum of `value(record)` per key, for any
    /// [`Summable`] value: integers wrap on overflow (in debug
    /// and release builds alike), floats add. [`KeyedStream::min`] and
    /// [`KeyedStream::max`] work the same way.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use std::collections::BTreeMap;
    ///
    /// // (account, amount)
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("payments", vec![(1u32, 10i64), (2, 5), (1, -3), (2, 1)])
    ///         .key_by(|p: &(u32, i64)| p.0)
    ///         .sum("balance", |p: &(u32, i64)| p.1)
    ///         .collect("out")
    /// });
    /// let balances: BTreeMap<u32, i64> = out.take().into_iter().collect();
    /// assert_eq!(balances, BTreeMap::from([(1, 7), (2, 6)]));
    /// ```
    pub fn sum<V, F>(&self, name: &str, value: F) -> Stream<(K, V)>
    where
        V: Data + Summable,
        F: Fn(&T) -> V + Clone + Send + Sync + 'static,
        K: StateData,
        V: StateData,
    {
        self.rolling_value(name, value, Summable::add)
    }

    /// Rolling minimum of `value(record)` per key, for any `Ord + Clone` value (a key's
    /// first value is its minimum, so there is no empty case).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use std::collections::BTreeMap;
    ///
    /// let (min, max) = run_on_two_shards(|df| {
    ///     let keyed = df
    ///         .vec_source("temperatures", vec![(1u32, 4i64), (1, -2), (2, 3), (1, 9)])
    ///         .key_by(|r: &(u32, i64)| r.0);
    ///     let min = keyed.min("min", |r: &(u32, i64)| r.1).collect("min");
    ///     (min, keyed.max("max", |r: &(u32, i64)| r.1).collect("max"))
    /// });
    /// let min: BTreeMap<u32, i64> = min.take().into_iter().collect();
    /// let max: BTreeMap<u32, i64> = max.take().into_iter().collect();
    /// assert_eq!((min[&1], max[&1], min[&2], max[&2]), (-2, 9, 3, 3));
    /// ```
    pub fn min<V, F>(&self, name: &str, value: F) -> Stream<(K, V)>
    where
        V: Data + Ord,
        F: Fn(&T) -> V + Clone + Send + Sync + 'static,
        K: StateData,
        V: StateData,
    {
        self.rolling_value(name, value, Ord::min)
    }

    /// Rolling maximum of `value(record)` per key (see also the example of
    /// [`KeyedStream::min`]).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use std::collections::BTreeMap;
    ///
    /// // Any `Ord + Clone` value: the alphabetically last name per team so far.
    /// let out = run_on_two_shards(|df| {
    ///     let players = vec![(1u32, "kim".to_string()), (1, "lee".into()), (1, "ada".into())];
    ///     df.vec_source("players", players)
    ///         .key_by(|p: &(u32, String)| p.0)
    ///         .max("last", |p: &(u32, String)| p.1.clone())
    ///         .collect("out")
    /// });
    /// let last: BTreeMap<u32, String> = out.take().into_iter().collect();
    /// assert_eq!(last[&1], "lee");
    /// ```
    pub fn max<V, F>(&self, name: &str, value: F) -> Stream<(K, V)>
    where
        V: Data + Ord,
        F: Fn(&T) -> V + Clone + Send + Sync + 'static,
        K: StateData,
        V: StateData,
    {
        self.rolling_value(name, value, Ord::max)
    }

    /// A rolling fold of `value(record)` with `combine(aggregate, value)`.
    fn rolling_value<V, F>(&self, name: &str, value: F, combine: fn(V, V) -> V) -> Stream<(K, V)>
    where
        V: Data,
        F: Fn(&T) -> V + Clone + Send + Sync + 'static,
        K: StateData,
        V: StateData,
    {
        self.fold(name, move |acc: Option<&V>, r| {
            let v = value(&r);
            match acc {
                Some(a) => combine(a.clone(), v),
                None => v,
            }
        })
    }
}
