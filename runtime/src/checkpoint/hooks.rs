//! Job-level hooks of a checkpointed dataflow ([`JobHook`]).

use super::Guarantee;

/// Job-level hooks of a checkpointed dataflow, run on the thread that starts and joins the
/// job: where a two-phase-commit sink resolves its transactions. Add with
/// [`Dataflow::on_job`](crate::Dataflow::on_job).
pub trait JobHook: Send + Sync {
    /// Before any shard starts. `restored`: the checkpoint the job restores from (at-most-
    /// once: the previous run's number); `None` for a fresh start. Commit what was
    /// pre-committed up to it; abort (delete) what came after.
    fn before_start(&self, restored: Option<u64>, guarantee: Guarantee) -> Result<(), HookError>;
    /// After every shard ended cleanly and the final manifest, checkpoint `last`, was
    /// written: commit everything up to it.
    fn after_finish(&self, last: u64) -> Result<(), HookError>;
}

/// What a [`JobHook`] returns when it fails: any error (a `String` converts with `?` or
/// `.into()`).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;
