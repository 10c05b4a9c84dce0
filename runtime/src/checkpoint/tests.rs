//! Named sections and the archiving of changelog chunks.

use rkyv::util::AlignedVec;

use super::scope::EntryScope;
use super::*;
use crate::data::ExchangeData;

/// What `assign` would hand a one-shard restore of `state`.
fn restored(state: StateWriter) -> StateReader {
    let entries = state
        .entries
        .into_iter()
        .map(|e| {
            let mut bytes = AlignedVec::<16>::with_capacity(e.bytes.len());
            bytes.extend_from_slice(&e.bytes);
            RestoredEntry {
                mixed: EntryScope::from_parts(e.split, e.scope).is_mixed(),
                changelog: e.changelog,
                name: e.name,
                version: e.version,
                bytes,
            }
        })
        .collect();
    StateReader {
        checkpoint: 1,
        shard: 0,
        shards: 1,
        entries,
    }
}

#[test]
fn named_sections_read_back_apart_and_refuse_other_versions() {
    let mut state = StateWriter::default();
    state.section("counts", 1).put_keyed(7, 10u64).unwrap();
    state
        .section("timers", 2)
        .put_keyed_all([(7, 100i64), (8, 200)])
        .unwrap();
    let reader = restored(state);
    assert_eq!(
        reader
            .section("counts", 1)
            .unwrap()
            .values::<u64>()
            .unwrap(),
        [10]
    );
    let mut timers = reader
        .section("timers", 2)
        .unwrap()
        .keyed_values::<i64>()
        .unwrap();
    timers.sort();
    assert_eq!(timers, [100, 200]);
    assert!(reader.section("absent", 1).unwrap().is_empty());
    let err = reader.section("timers", 1).unwrap_err();
    assert!(
        err.message
            .contains("written at version 2, this build reads version 1"),
        "{err}"
    );
}

#[test]
fn chunks_are_archived_from_the_back_into_spare_buffers_and_read_back() {
    let mut records: Vec<(u32, String)> = (0..10).map(|i| (i, format!("r{i}"))).collect();
    let mut scratch = Scratch::default();
    let spare = Vec::with_capacity(1 << 16);
    let at = spare.as_ptr();
    scratch.spare.push(spare);
    let first = archive_chunk(&mut records, &mut scratch, 4)
        .unwrap()
        .unwrap();
    // The spare buffer holds the chunk: no new allocation.
    assert_eq!(first.as_ptr(), at);
    assert!(scratch.spare.is_empty());
    let mut chunks = vec![first];
    while let Some(chunk) = archive_chunk(&mut records, &mut scratch, 4) {
        chunks.push(chunk.unwrap());
    }
    assert_eq!(chunks.len(), 3);
    let mut back = Vec::new();
    for chunk in chunks {
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&chunk);
        <(u32, String)>::read_batch(&aligned, &mut back).unwrap();
    }
    back.sort();
    let expected: Vec<(u32, String)> = (0..10).map(|i| (i, format!("r{i}"))).collect();
    assert_eq!(back, expected);
}
