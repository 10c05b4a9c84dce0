//! What the integration tests share: reading CSV output with the csv crate itself (not the
//! harness's own CSV code, so the tests stay an independent check of what it writes), and
//! running the replay CLI.
#![allow(dead_code)]

pub mod replay;

/// A small deterministic generator of kill delays for the SIGKILL tests (no dependency
/// needed): xorshift64.
pub struct Delays(pub u64);

impl Delays {
    /// The next delay, between `min_ms` and `max_ms` inclusive.
    pub fn next(&mut self, min_ms: u64, max_ms: u64) -> std::time::Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        std::time::Duration::from_millis(min_ms + self.0 % (max_ms - min_ms + 1))
    }
}

/// The fields of one CSV line, unquoted. Panics on anything but exactly one record.
pub fn fields(line: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(line.len() + 1)
        .from_reader(line.as_bytes());
    let mut records = reader.records();
    let record = match records.next() {
        Some(Ok(record)) => record,
        Some(Err(e)) => panic!("bad CSV line {line:?}: {e}"),
        None => return vec![String::new()],
    };
    assert!(records.next().is_none(), "several CSV records in {line:?}");
    record.iter().map(str::to_owned).collect()
}
