//! What the integration tests share: reading CSV output with the csv crate itself (not the
//! harness's own CSV code, so the tests stay an independent check of what it writes), and
//! running the replay CLI.
#![allow(dead_code)]

pub mod replay;

/// The rows of a CSV output file (its header left out), sorted.
pub fn output_rows(path: &std::path::Path) -> Vec<String> {
    let mut rows: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

/// The committed rows of a transactional file sink's directory (each file's header left
/// out), sorted; none if the directory does not exist yet. Every visible file must be a
/// whole committed part file (pending ones are hidden).
pub fn committed_rows(dir: &std::path::Path) -> Vec<String> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with('.') {
            continue; // pending: not committed
        }
        assert!(
            name.starts_with("part-") && name.ends_with(".csv"),
            "{name}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "torn file {name}");
        rows.extend(text.lines().skip(1).map(str::to_string));
    }
    rows.sort();
    rows
}

/// A small deterministic generator of kill delays for the SIGKILL tests (no dependency
/// needed): xorshift64.
pub struct Delays(pub u64);

impl Delays {
    /// The next number between `min` and `max` inclusive.
    pub fn between(&mut self, min: u64, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        min + self.0 % (max - min + 1)
    }

    /// The next delay, between `min_ms` and `max_ms` inclusive.
    pub fn next(&mut self, min_ms: u64, max_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.between(min_ms, max_ms))
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
