//! [`StateReader`]: the state a restored operator receives.

use rkyv::util::AlignedVec;

use crate::data::ExchangeData;
use crate::error::Failure;
use crate::keys::shard_of_key_group;

/// The state a restored operator receives: every entry of its node that belongs to this
/// shard, over all the checkpoint's shard files.
#[derive(Debug)]
pub struct StateReader {
    pub(crate) checkpoint: u64,
    pub(crate) shard: usize,
    pub(crate) shards: usize,
    pub(crate) entries: Vec<RestoredEntry>,
}

/// One entry of a restored operator's state.
#[derive(Debug, Clone)]
pub(crate) struct RestoredEntry {
    pub name: String,
    pub version: u32,
    /// Written by `put_keyed_all` or `put_changelog` (values carry their key groups).
    pub mixed: bool,
    /// A keyed table's changes (`put_changelog`); in chain order among the node's entries.
    pub changelog: bool,
    pub bytes: AlignedVec<16>,
}

impl StateReader {
    /// The checkpoint restored from.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries of the operator's named state `name`, which this build reads at format
    /// `version`; an entry written at another version is a clear error (not misread).
    ///
    /// ```
    /// # use rill_runtime::checkpoint::StateReader;
    /// fn restore(state: &StateReader) -> rill_runtime::OpResult {
    ///     let counts: Vec<(u64, u64)> = state.section("counts", 1)?.values()?;
    ///     # let _ = counts;
    ///     Ok(())
    /// }
    /// ```
    pub fn section(&self, name: &str, version: u32) -> Result<StateReader, Failure> {
        let mut entries = Vec::new();
        for e in self.entries.iter().filter(|e| e.name == name) {
            if e.version != version {
                return Err(Failure::corrupt(format!(
                    "state '{name}' was written at version {}, this build reads version \
                     {version}",
                    e.version
                )));
            }
            entries.push(e.clone());
        }
        Ok(StateReader {
            checkpoint: self.checkpoint,
            shard: self.shard,
            shards: self.shards,
            entries,
        })
    }

    /// Validates and reads every entry written by
    /// [`StateWriter::put_keyed`](super::StateWriter::put_keyed) or
    /// [`StateWriter::put_split`](super::StateWriter::put_split) as a `T` (the type the operator
    /// wrote).
    pub fn values<T: ExchangeData>(&self) -> Result<Vec<T>, Failure> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in self.entries.iter().filter(|e| !e.mixed) {
            T::read_batch(&e.bytes, &mut out).map_err(mismatch)?;
        }
        Ok(out)
    }

    /// The value this shard wrote with [`StateWriter::put_own`](super::StateWriter::put_own) in
    /// this section, if the checkpoint was taken on as many shards as the job runs on now (else
    /// `None`).
    pub fn own<T>(&self) -> Result<Option<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        let shards = self.shards as u32;
        let mut own = self
            .values::<(u32, T)>()?
            .into_iter()
            .filter(|(written_on, _)| *written_on == shards);
        match (own.next(), own.next()) {
            (Some((_, value)), None) => Ok(Some(value)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(Failure::corrupt(
                "two values of one shard's own state (StateWriter::put_own)".to_string(),
            )),
        }
    }

    /// Validates and reads the values written by
    /// [`StateWriter::put_keyed_all`](super::StateWriter::put_keyed_all) whose key groups this
    /// shard owns.
    pub fn keyed_values<T>(&self) -> Result<Vec<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        self.grouped(false)
    }

    /// The changelog records (written with `put_changelog`) of the key groups this shard
    /// owns, oldest checkpoint of the chain first.
    pub(crate) fn changelog<T>(&self) -> Result<Vec<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        self.grouped(true)
    }

    fn grouped<T>(&self, changelog: bool) -> Result<Vec<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        let mut out = Vec::new();
        let mut all: Vec<(u32, T)> = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.mixed && e.changelog == changelog)
        {
            all.clear();
            <(u32, T)>::read_batch(&e.bytes, &mut all).map_err(mismatch)?;
            out.extend(all.drain(..).filter_map(|(group, value)| {
                (shard_of_key_group(group, self.shards) == self.shard).then_some(value)
            }));
        }
        Ok(out)
    }
}

fn mismatch(e: rkyv::rancor::Error) -> Failure {
    Failure::corrupt(format!("state entry does not match its operator: {e}"))
}
