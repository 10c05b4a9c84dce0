//! Tests of the checkpoint files: formats and their damage, chains, retention and its
//! fallback, recovery and what it sets aside.

use super::*;

fn sample(id: u64) -> ShardFile {
    ShardFile {
        checkpoint: id,
        shard: 1,
        shards: 2,
        nodes: vec![NodeState {
            operator: "window count".into(),
            entries: vec![StateEntry {
                name: "counts".into(),
                version: 1,
                split: false,
                scope: 77,
                changelog: false,
                bytes: vec![1, 2, 3, 4, 5],
            }],
        }],
    }
}

#[test]
fn shard_files_round_trip_and_reject_damage() {
    let bytes = encode(&sample(7)).unwrap();
    let payload = decode(&bytes).unwrap();
    let f = archived(&payload);
    assert_eq!(f.checkpoint.to_native(), 7);
    assert_eq!(f.nodes[0].entries[0].scope.to_native(), 77);
    assert_eq!(&f.nodes[0].entries[0].bytes[..], &[1, 2, 3, 4, 5]);
    // Truncated at every length: an error, never a panic.
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len]).is_err(), "length {len}");
    }
    // Every single flipped byte is caught (header or checksum).
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x5a;
        if (20..HEADER).contains(&i) {
            continue; // reserved bytes
        }
        assert!(decode(&bad).is_err(), "byte {i}");
    }
}

#[test]
fn manifests_round_trip_and_reject_damage() {
    let m = Manifest {
        id: 12,
        shards: 2,
        guarantee: Guarantee::AtLeastOnce,
        finished: false,
        base: 9,
        nodes: vec!["source".into(), "window count".into()],
        files: vec![
            ("shard-000.bin".into(), 10, 0xdead),
            ("shard-001.bin".into(), 0, 1),
        ],
    };
    let text = m.render();
    assert_eq!(Manifest::parse(&text).unwrap(), m);
    assert!(Manifest::parse(&text[..text.len() - 4]).is_err());
    assert!(Manifest::parse(&text.replace("id 12", "id 13")).is_err());
}

/// Re-renders `text` with another first line, with a valid checksum.
fn with_head(text: &str, head: &str) -> String {
    let body = &text[..text.rfind("crc ").unwrap()];
    let (_, rest) = body.split_once('\n').unwrap();
    let body = format!("{head}\n{rest}");
    format!("{body}crc {:08x}\n", crc32fast::hash(body.as_bytes()))
}

#[test]
fn other_format_versions_are_refused_not_skipped() {
    let m = Manifest {
        id: 5,
        shards: 1,
        guarantee: Guarantee::ExactlyOnce,
        finished: true,
        base: 5,
        nodes: vec!["source".into()],
        files: Vec::new(),
    };
    let text = m.render();
    assert!(text.starts_with("rill checkpoint v3\n"), "{text}");
    let v1 = with_head(&text, "rill checkpoint v1");
    assert!(matches!(Manifest::parse(&v1), Err(LoadError::Version(1))));
    let v9 = with_head(&text, "rill checkpoint v9");
    assert!(matches!(Manifest::parse(&v9), Err(LoadError::Version(9))));
    let other = with_head(&text, "something else");
    assert!(matches!(
        Manifest::parse(&other),
        Err(LoadError::Damaged(_))
    ));
    // A shard file of another version.
    let mut bytes = encode(&sample(5)).unwrap();
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    let err = decode(&bytes).unwrap_err();
    assert!(err.contains("format version 1"), "{err}");
    // Recovery stops at the newest checkpoint of another version.
    let root = std::env::temp_dir().join(format!("rill-store-v-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(checkpoint_dir(&root, 5)).unwrap();
    fs::write(checkpoint_dir(&root, 5).join(MANIFEST), v1).unwrap();
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), None);
    assert_eq!(r.other_version, Some((checkpoint_dir(&root, 5), 1)));
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn latest_valid_checkpoint_is_found_and_damaged_ones_skipped() {
    let root = std::env::temp_dir().join(format!("rill-store-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for id in 1..=3 {
        write_checkpoint(&root, id, id);
    }
    // Checkpoint 4 was in progress (no manifest); 3's file is truncated.
    fs::create_dir_all(checkpoint_dir(&root, 4)).unwrap();
    let f3 = checkpoint_dir(&root, 3).join("shard-000.bin");
    let len = fs::metadata(&f3).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&f3)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), Some(2));
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].1.contains("truncated"), "{:?}", r.skipped);
    prune(&root, 2, 1);
    // 1 is the fallback of 2 (full, and outside 2's chain).
    assert!(checkpoint_dir(&root, 1).exists());
    assert!(checkpoint_dir(&root, 2).exists());
    remove_after(&root, 2);
    assert!(!checkpoint_dir(&root, 3).exists());
    assert!(!checkpoint_dir(&root, 4).exists());
    fs::remove_dir_all(&root).unwrap();
}

/// Writes checkpoint `id` of chain `base` (one shard file) under `root`.
fn write_checkpoint(root: &Path, id: u64, base: u64) {
    let bytes = encode(&sample(id)).unwrap();
    let dir = checkpoint_dir(root, id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("shard-000.bin"), &bytes).unwrap();
    let m = Manifest {
        id,
        shards: 1,
        guarantee: Guarantee::ExactlyOnce,
        finished: false,
        base,
        nodes: vec!["n".into()],
        files: vec![(
            "shard-000.bin".into(),
            bytes.len() as u64,
            crc32fast::hash(&bytes),
        )],
    };
    write_manifest(root, &m).unwrap();
}

fn damage(root: &Path, id: u64) {
    let f = checkpoint_dir(root, id).join("shard-000.bin");
    let mut bytes = fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&f, bytes).unwrap();
}

#[test]
fn recovery_reads_whole_chains_and_falls_back_past_a_damaged_link() {
    let root = std::env::temp_dir().join(format!("rill-store-chain-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    // Chains: 1 <- 2 <- 3, then 4 <- 5.
    for (id, base) in [(1, 1), (2, 1), (3, 1), (4, 4), (5, 4)] {
        write_checkpoint(&root, id, base);
    }
    let ids = |r: &Recovery| {
        r.loaded.as_ref().map(|l| {
            l.files
                .iter()
                .map(|p| archived(p).checkpoint.to_native())
                .collect::<Vec<_>>()
        })
    };
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), Some(5));
    assert_eq!(ids(&r), Some(vec![4, 5]), "base first");
    // The base of the newest chain is damaged: both of its checkpoints are skipped.
    damage(&root, 4);
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), Some(3));
    assert_eq!(ids(&r), Some(vec![1, 2, 3]));
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    assert!(
        r.skipped[0].1.contains("needs chk-000004"),
        "{:?}",
        r.skipped
    );
    // A missing increment breaks the chain after it, not before.
    fs::remove_dir_all(checkpoint_dir(&root, 2)).unwrap();
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), Some(1));
    assert!(
        r.skipped.iter().any(|(_, why)| why.contains("chk-000002")),
        "{:?}",
        r.skipped
    );
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn retention_keeps_every_checkpoint_a_retained_one_needs() {
    let root = std::env::temp_dir().join(format!("rill-store-keep-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for (id, base) in [(1, 1), (2, 1), (3, 1), (4, 1)] {
        write_checkpoint(&root, id, base);
    }
    // Retaining one checkpoint (4) keeps its whole chain.
    prune(&root, 4, 1);
    assert!((1..=4).all(|id| checkpoint_dir(&root, id).exists()));
    for (id, base) in [(5, 5), (6, 5)] {
        write_checkpoint(&root, id, base);
    }
    // Retaining 2 (5 and 6): chain 1..4 is no longer needed, but its full checkpoint 1
    // stays as the fallback of chain 5..6.
    prune(&root, 6, 2);
    assert!((2..=4).all(|id| !checkpoint_dir(&root, id).exists()));
    assert!(checkpoint_dir(&root, 1).exists());
    assert!(checkpoint_dir(&root, 5).exists() && checkpoint_dir(&root, 6).exists());
    assert_eq!(find_latest(&root).checkpoint(), Some(6));
    // Retaining 3 of chain 5..7 keeps all three.
    write_checkpoint(&root, 7, 5);
    prune(&root, 7, 3);
    assert!((5..=7).all(|id| checkpoint_dir(&root, id).exists()));
    fs::remove_dir_all(&root).unwrap();
}

/// The chain base of checkpoint `id` in a run whose full checkpoints are `fulls`, with
/// chains of at most `chain`: what the coordinator writes in manifests.
fn base_of(id: u64, fulls: &[u64], chain: u64) -> u64 {
    let full = fulls.iter().copied().filter(|&f| f <= id).max().unwrap();
    full.max((id + 1).saturating_sub(chain))
}

/// The ids of the `chk-*` directories under `root`.
fn present(root: &Path) -> Vec<u64> {
    checkpoint_ids(root)
}

/// Copies the directory tree `from` to `to` (replaced).
fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Ways a file is damaged after a crash.
#[derive(Debug, Clone, Copy)]
enum Damage {
    BitFlip,
    Truncated,
    Deleted,
    /// Replaced by the same shard's file of another checkpoint.
    Swapped,
}

fn damage_file(root: &Path, id: u64, how: Damage) {
    let f = checkpoint_dir(root, id).join("shard-000.bin");
    match how {
        Damage::BitFlip => {
            let mut bytes = fs::read(&f).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
            fs::write(&f, bytes).unwrap();
        }
        Damage::Truncated => {
            let len = fs::metadata(&f).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        Damage::Deleted => fs::remove_file(&f).unwrap(),
        Damage::Swapped => {
            let other = checkpoint_ids(root).into_iter().find(|&o| o != id).unwrap();
            fs::copy(checkpoint_dir(root, other).join("shard-000.bin"), &f).unwrap();
        }
    }
}

/// Checkpoints 1..=14 as a run with chains of 4 and a full checkpoint every 8 leaves
/// them (fulls 1 and 9), pruned after each with `retain`.
fn fourteen(root: &Path, retain: usize) {
    let _ = fs::remove_dir_all(root);
    for id in 1..=14 {
        write_checkpoint(root, id, base_of(id, &[1, 9], 4));
        prune(root, id, retain);
    }
}

#[test]
fn a_damaged_file_anywhere_in_the_newest_chain_falls_back_to_the_full_checkpoint() {
    let root = std::env::temp_dir().join(format!("rill-store-fb-{}", std::process::id()));
    let pristine = root.join("pristine");
    fourteen(&pristine, 1);
    // The newest chain is 11..=14 (base 11); 9 is the full checkpoint before it; 10
    // (needed by no retained chain) and everything before 9 are gone.
    assert_eq!(present(&pristine), [9, 11, 12, 13, 14]);
    let work = root.join("work");
    for link in 11..=14 {
        for how in [
            Damage::BitFlip,
            Damage::Truncated,
            Damage::Deleted,
            Damage::Swapped,
        ] {
            copy_tree(&pristine, &work);
            damage_file(&work, link, how);
            let r = find_latest(&work);
            assert_eq!(
                r.checkpoint(),
                Some(9),
                "chk {link} {how:?}: {:?}",
                r.skipped
            );
            assert_eq!(r.loaded.as_ref().unwrap().files.len(), 1, "9 alone");
            // Every newer checkpoint is reported, newest first, the damaged one too.
            let skipped: Vec<PathBuf> = r.skipped.iter().map(|s| s.0.clone()).collect();
            let newer: Vec<PathBuf> = (11..=14)
                .rev()
                .map(|id| checkpoint_dir(&work, id))
                .collect();
            assert_eq!(skipped, newer, "{link} {how:?}");
            let own = &r.skipped[(14 - link) as usize].1;
            assert!(!own.contains("its chain"), "{link} {how:?}: {own}");
        }
    }
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_restart_refuses_only_when_every_retained_checkpoint_is_damaged() {
    let root = std::env::temp_dir().join(format!("rill-store-all-{}", std::process::id()));
    let pristine = root.join("pristine");
    fourteen(&pristine, 3);
    let work = root.join("work");
    // The fallback alone damaged: the newest is restored.
    copy_tree(&pristine, &work);
    damage_file(&work, 9, Damage::BitFlip);
    assert_eq!(find_latest(&work).checkpoint(), Some(14));
    // The base of the newest chain (needed by all three retained ones) damaged: 10,
    // whose chain starts at the full checkpoint 9.
    copy_tree(&pristine, &work);
    assert_eq!(present(&work), [9, 10, 11, 12, 13, 14]);
    damage_file(&work, 11, Damage::Truncated);
    assert_eq!(find_latest(&work).checkpoint(), Some(10));
    // Both: nothing is usable, and every checkpoint says why.
    damage_file(&work, 9, Damage::Deleted);
    let r = find_latest(&work);
    assert_eq!(r.checkpoint(), None);
    assert_eq!(r.skipped.len(), present(&work).len(), "{:?}", r.skipped);
    assert!(r.skipped.iter().all(|(_, why)| !why.is_empty()));
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn retention_keeps_the_fallback_until_a_newer_full_checkpoint_takes_its_place() {
    let root = std::env::temp_dir().join(format!("rill-store-ret-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    // Chains of 4; a full checkpoint every 8, and one requested (a savepoint) at 30.
    let (chain, retain) = (4, 2);
    let fulls = [1, 9, 17, 25, 30, 38, 46];
    for id in 1..=50 {
        write_checkpoint(&root, id, base_of(id, &fulls, chain));
        prune(&root, id, retain);
        // The fallback: the newest full checkpoint before the newest chain's base.
        let newest_base = base_of(id, &fulls, chain);
        let fallback = fulls.iter().copied().filter(|&f| f < newest_base).max();
        let mut want: Vec<u64> = ((id + 1).saturating_sub(retain as u64).max(1)..=id)
            .flat_map(|r| base_of(r, &fulls, chain)..=r)
            .chain(fallback)
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(present(&root), want, "after checkpoint {id}");
    }
    // Spot checks of the rule, by hand: after 12 (chain 9..12) the fallback is 1;
    // after 13 (chain 10..13) it is 9, and 1 is gone; the savepoint 30 replaced 25
    // once the newest chain started after it.
    fs::remove_dir_all(&root).unwrap();
    for (upto, fallback, gone) in [(12, 1, None), (13, 9, Some(1)), (34, 30, Some(25))] {
        for id in 1..=upto {
            write_checkpoint(&root, id, base_of(id, &fulls, chain));
            prune(&root, id, 1);
        }
        let ids = present(&root);
        assert_eq!(ids[0], fallback, "after {upto}: {ids:?}");
        if let Some(gone) = gone {
            assert!(!ids.contains(&gone), "after {upto}: {ids:?}");
        }
        fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn skipped_checkpoints_are_set_aside_with_their_reasons() {
    let root = std::env::temp_dir().join(format!("rill-store-aside-{}", std::process::id()));
    fourteen(&root, 1);
    damage_file(&root, 12, Damage::BitFlip);
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), Some(9));
    let moved = set_aside(&root, &r.skipped);
    remove_after(&root, 9);
    assert_eq!(present(&root), [9], "the fallback stays");
    let aside = damaged_dir(&root);
    for ((to, why), (from, reason)) in moved.iter().zip(&r.skipped) {
        assert_eq!(to, &aside.join(from.file_name().unwrap()));
        assert_eq!(why, reason);
        assert!(to.join(MANIFEST).exists(), "{to:?} kept whole");
        let said = fs::read_to_string(to.join("SKIPPED")).unwrap();
        assert_eq!(said.trim(), reason);
    }
    assert_eq!(moved.len(), 4);
    // A later recovery that skips something replaces them.
    for id in 10..=11 {
        write_checkpoint(&root, id, 10);
    }
    damage_file(&root, 10, Damage::Deleted);
    let r = find_latest(&root);
    assert_eq!(r.checkpoint(), Some(9));
    set_aside(&root, &r.skipped);
    let mut left: Vec<_> = fs::read_dir(&aside)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["chk-000010", "chk-000011"]);
    fs::remove_dir_all(&root).unwrap();
}
