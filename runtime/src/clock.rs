//! Processing time: where it comes from and how it travels.
//!
//! Processing time moves through a dataflow in band, like watermarks: a source's chain
//! head sends [`Progress::ProcessingTime`](crate::Progress::ProcessingTime) down its
//! chain, exchanges carry it behind the data, and an operator with several inputs sees
//! the minimum over the inputs that have not ended. An operator therefore fires a
//! processing-time timer for `t` only after every record that arrived before `t` has
//! reached it, which keeps processing-time behaviour deterministic under a simulated
//! clock.
//!
//! With [`Clock::System`] (the default) every source head stamps the wall clock (in
//! milliseconds since the Unix epoch) whenever it advanced since the last poll. With
//! [`Clock::Manual`] the runtime sends nothing: sources move processing time themselves by
//! calling `out.progress(Progress::ProcessingTime(t))`, as a replay of a recorded log
//! does.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::time::Timestamp;

/// The source of processing time for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// Wall-clock time, stamped by every source head.
    #[default]
    System,
    /// Simulated time, moved only by the sources themselves.
    Manual,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn system_now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Timestamp)
}

/// The event time that is due now, which an operator's watermark lag is measured from
/// ([`Config::event_time_now`](crate::Config::event_time_now)): by default the wall clock,
/// in milliseconds since the Unix epoch.
#[derive(Clone)]
pub(crate) struct EventTimeNow(pub std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl EventTimeNow {
    /// The event time due now.
    pub(crate) fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for EventTimeNow {
    fn default() -> Self {
        EventTimeNow(std::sync::Arc::new(system_now))
    }
}

impl std::fmt::Debug for EventTimeNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventTimeNow(..)")
    }
}
