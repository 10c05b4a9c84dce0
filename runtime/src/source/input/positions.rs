//! Positions of an input, for a host that replays from its own log.
//!
//! Every record sent through an input gets the next *position* (0, 1, 2, ... from the
//! job's first start, counted on by every later run). Each shard remembers one past the
//! highest position it took: with one sending thread a shard's records arrive in position
//! order, so shard `k` took exactly the positions below `p[k]` that were routed to it. A
//! run with `n` shards is a *generation*: `(n, p[0..n])` and the routing (a key's shard,
//! or position `% n`) say which positions it took.
//!
//! A checkpoint holds every shard's position of the current generation, and carries the
//! generations before it that are not yet covered: positions an earlier run took beyond
//! what the current one has. On a restore (onto any shard count), every shard reports
//! what it got; the union is the whole table. The host resends from [`Replay::resume`],
//! the lowest position not known to be taken; each shard drops the records that an
//! earlier generation took (so a resend is neither lost nor applied twice), and the new
//! generation's positions start at `resume`.
//!
//! A split of an input is `generation << 16 | shard`, with `of` = that generation's shard
//! count.

use crate::checkpoint::SplitPosition;
use crate::keys::{key_group, shard_of_key_group};

/// One run's shard count and per-shard positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    pub number: u32,
    pub shards: u32,
    /// By shard: one past the highest position it took.
    pub positions: Vec<u64>,
}

impl Generation {
    fn low(&self) -> u64 {
        self.positions.iter().copied().min().unwrap_or(0)
    }

    fn high(&self) -> u64 {
        self.positions.iter().copied().max().unwrap_or(0)
    }
}

/// The split of shard `shard` of generation `number`.
pub(crate) fn split(number: u32, shard: usize, shards: usize, position: u64) -> SplitPosition {
    SplitPosition {
        split: (number << 16) | shard as u32,
        of: shards as u32,
        position,
    }
}

/// What a restored input knows of earlier runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    /// Earlier generations not covered by a later one, oldest first.
    pub generations: Vec<Generation>,
    /// The lowest position not known to be taken: where the host resends from.
    pub resume: u64,
    /// This run's generation number.
    pub number: u32,
    /// No position at or above this was taken by an earlier generation.
    below: u64,
}

impl Replay {
    /// The table from every split the shards restored (none for a fresh job).
    pub(crate) fn from_splits(splits: &[SplitPosition]) -> Replay {
        let mut generations: Vec<Generation> = Vec::new();
        for s in splits {
            let (number, shard) = (s.split >> 16, (s.split & 0xffff) as usize);
            let g = match generations.iter_mut().find(|g| g.number == number) {
                Some(g) => g,
                None => {
                    generations.push(Generation {
                        number,
                        shards: s.of,
                        positions: vec![0; s.of as usize],
                    });
                    generations.last_mut().expect("pushed")
                }
            };
            if let Some(p) = g.positions.get_mut(shard) {
                *p = (*p).max(s.position);
            }
        }
        generations.sort_by_key(|g| g.number);
        // A generation is covered once a later one took everything below its highest
        // position.
        let covered: Vec<bool> = (0..generations.len())
            .map(|i| {
                let high = generations[i].high();
                generations[i + 1..].iter().any(|later| later.low() >= high)
            })
            .collect();
        let number = generations.last().map_or(0, |g| g.number + 1);
        let mut kept = covered.into_iter();
        generations.retain(|_| !kept.next().expect("one per generation"));
        Replay {
            resume: generations.iter().map(Generation::low).max().unwrap_or(0),
            below: generations.iter().map(Generation::high).max().unwrap_or(0),
            generations,
            number,
        }
    }

    /// True if an earlier generation may have taken the record at `position` (false for
    /// every position past what earlier runs took: no key needs hashing there).
    #[inline]
    pub(crate) fn may_be_taken(&self, position: u64) -> bool {
        position < self.below
    }

    /// True if an earlier generation took the record at `position` (`key_hash`: its key's
    /// hash for a keyed input).
    #[inline]
    pub(crate) fn taken(&self, position: u64, key_hash: Option<u64>) -> bool {
        if !self.may_be_taken(position) {
            return false;
        }
        self.generations.iter().any(|g| {
            let shard = match key_hash {
                Some(h) => shard_of_key_group(key_group(h), g.shards as usize),
                None => (position % u64::from(g.shards)) as usize,
            };
            position < g.positions.get(shard).copied().unwrap_or(0)
        })
    }

    /// The restored splits a shard carries on into its checkpoints: those of the
    /// generations still needed.
    pub(crate) fn carried(&self, restored: &[SplitPosition]) -> Vec<SplitPosition> {
        restored
            .iter()
            .filter(|s| self.generations.iter().any(|g| g.number == s.split >> 16))
            .copied()
            .collect()
    }
}

/// The shard a record goes to in a run of `shards` shards.
#[inline]
pub(crate) fn route(position: u64, key_hash: Option<u64>, shards: usize) -> usize {
    match key_hash {
        Some(h) => shard_of_key_group(key_group(h), shards),
        None => (position % shards as u64) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The positions a generation took, by brute force.
    fn took(g: &Generation, upto: u64) -> Vec<u64> {
        (0..upto)
            .filter(|&p| p < g.positions[route(p, None, g.shards as usize)])
            .collect()
    }

    #[test]
    fn a_fresh_input_resumes_at_zero_and_drops_nothing() {
        let r = Replay::from_splits(&[]);
        assert_eq!((r.resume, r.number), (0, 0));
        assert!(!r.taken(0, None) && !r.taken(5, Some(7)));
    }

    #[test]
    fn resume_and_drops_follow_what_each_shard_took() {
        // Round robin over 2 shards: shard 0 took 0, 2, .., 8; shard 1 took 1, 3, .., 13.
        let splits = [split(0, 0, 2, 10), split(0, 1, 2, 14)];
        let r = Replay::from_splits(&splits);
        assert_eq!(r.resume, 10);
        assert_eq!(r.number, 1);
        let dropped: Vec<u64> = (10..20).filter(|&p| r.taken(p, None)).collect();
        assert_eq!(dropped, vec![11, 13], "shard 1 took the odd ones up to 13");
        assert_eq!(took(&r.generations[0], 20).len(), 12);
    }

    #[test]
    fn a_later_generation_that_took_everything_covers_an_earlier_one() {
        let splits = [
            split(0, 0, 2, 10),
            split(0, 1, 2, 14),
            // The next run, on 3 shards, got past 14 everywhere.
            split(1, 0, 3, 20),
            split(1, 1, 3, 16),
            split(1, 2, 3, 30),
        ];
        let r = Replay::from_splits(&splits);
        assert_eq!(r.generations.len(), 1);
        assert_eq!(r.generations[0].number, 1);
        assert_eq!((r.resume, r.number), (16, 2));
        assert_eq!(r.carried(&splits).len(), 3);
        // Not yet past 14 everywhere: both are kept.
        let r = Replay::from_splits(&[splits[0], splits[1], split(1, 0, 1, 12)]);
        assert_eq!(r.generations.len(), 2);
        assert_eq!(r.resume, 12);
        assert!(r.taken(13, None), "taken by the first run's shard 1");
        assert!(!r.taken(12, None) && !r.taken(14, None));
    }

    #[test]
    fn keyed_records_are_judged_by_their_keys_shard_then() {
        let hash = crate::keys::hash_key(&42u64);
        let owner = route(0, Some(hash), 2);
        let mut positions = [0, 0];
        positions[owner] = 100;
        let splits = [split(0, 0, 2, positions[0]), split(0, 1, 2, positions[1])];
        let r = Replay::from_splits(&splits);
        assert_eq!(r.resume, 0);
        assert!(r.taken(50, Some(hash)));
        assert!(!r.taken(100, Some(hash)));
    }
}
