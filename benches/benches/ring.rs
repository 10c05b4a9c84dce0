//! Candidate rings for the exchange channels: one producer thread and one consumer thread
//! move 1M `u64`s one at a time. Isolates the queue itself (no serialization, no runtime).
//!
//! `cargo bench -p rill-benches --bench ring`

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: u64 = 1_000_000;
const CAPACITY: usize = 1024;

fn rtrb_transfer() -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    let start = Instant::now();
    let consumer = thread::spawn(move || {
        let mut sum = 0u64;
        let mut got = 0;
        while got < N {
            if let Ok(v) = rx.pop() {
                sum = sum.wrapping_add(v);
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        sum
    });
    for i in 0..N {
        while tx.push(i).is_err() {
            std::hint::spin_loop();
        }
    }
    criterion::black_box(consumer.join().unwrap());
    start.elapsed()
}

fn rtrb_chunks() -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    let start = Instant::now();
    let consumer = thread::spawn(move || {
        let mut sum = 0u64;
        let mut got = 0u64;
        while got < N {
            let n = rx.slots().min(256);
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            let chunk = rx.read_chunk(n).unwrap();
            for v in chunk {
                sum = sum.wrapping_add(v);
            }
            got += n as u64;
        }
        sum
    });
    let mut i = 0;
    while i < N {
        let n = tx.slots().min(256).min((N - i) as usize);
        if n == 0 {
            std::hint::spin_loop();
            continue;
        }
        let chunk = tx.write_chunk_uninit(n).unwrap();
        let written = chunk.fill_from_iter(i..i + n as u64);
        i += written as u64;
    }
    criterion::black_box(consumer.join().unwrap());
    start.elapsed()
}

/// Moves N items through a blocking channel: `send` on this thread, `drain` on another.
fn blocking_transfer<S, R: Send + 'static>(
    (tx, rx): (S, R),
    send: impl Fn(&S, u64),
    drain: fn(R) -> u64,
) -> Duration {
    let start = Instant::now();
    let consumer = thread::spawn(move || drain(rx));
    for i in 0..N {
        send(&tx, i);
    }
    drop(tx);
    criterion::black_box(consumer.join().unwrap());
    start.elapsed()
}

fn crossbeam_transfer() -> Duration {
    blocking_transfer(
        crossbeam_channel::bounded::<u64>(CAPACITY),
        |tx, i| tx.send(i).unwrap(),
        |rx| rx.iter().fold(0u64, |s, v| s.wrapping_add(v)),
    )
}

fn std_transfer() -> Duration {
    blocking_transfer(
        mpsc::sync_channel::<u64>(CAPACITY),
        |tx, i| tx.send(i).unwrap(),
        |rx| rx.iter().fold(0u64, |s, v| s.wrapping_add(v)),
    )
}

fn rings(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_1M_u64_cross_thread");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("rtrb_push_pop", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rtrb_transfer()).sum())
    });
    g.bench_function("rtrb_chunks_256", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rtrb_chunks()).sum())
    });
    g.bench_function("crossbeam_bounded", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| crossbeam_transfer()).sum())
    });
    g.bench_function("std_sync_channel", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| std_transfer()).sum())
    });
    g.finish();
}

criterion_group!(benches, rings);
criterion_main!(benches);
