//! What the integration tests share: reading CSV output with the csv crate itself (not the
//! harness's own CSV code, so the tests stay an independent check of what it writes), and
//! running the replay CLI.
#![allow(dead_code)]

pub mod replay;

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
