//! What a shard's loop drives: chain heads (sources and exchange receivers) that start a
//! chain of direct calls, and exchange senders that finish partly filled batches.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use crate::error::Failure;

/// The start of a chain of operators on one shard.
pub(crate) trait Head {
    /// Does a bounded amount of work (a batch of records for a source, a few batches for a
    /// receiver); stops early once `blocked` says a downstream channel ran out of credit. Returns
    /// whether it did anything.
    fn poll(&mut self, blocked: &dyn Fn() -> bool) -> Result<bool, Failure>;
    /// True once the head will never produce anything again.
    fn is_done(&self) -> bool;
    /// True if input is waiting (used before parking).
    fn has_input(&self) -> bool;
    /// The exchange this head receives from, for error messages.
    fn exchange_name(&self) -> Option<&str> {
        None
    }
    /// Called on a head that is done whenever the shard services checkpoints: passes a
    /// newly requested barrier down its chain, so that operators whose inputs ended still
    /// take part in checkpoints.
    fn late_barrier(&mut self) -> Result<(), Failure> {
        Ok(())
    }
}

/// The shard loop's view of an exchange sender.
pub(crate) trait SenderDriver {
    /// Flushes what is due (everything with `force`); true while something is unsent.
    fn poll(&mut self, now: Instant, force: bool) -> Result<bool, Failure>;
    /// True if a consumer handed buffers back (so a blocked send may now proceed).
    fn has_returns(&self) -> bool;
}

/// Set while an exchange sender holds data it has no credit to send. A chain head is not
/// scheduled while any sender reachable from it through chained calls is blocked.
pub(crate) type BlockedFlag = Rc<Cell<bool>>;
