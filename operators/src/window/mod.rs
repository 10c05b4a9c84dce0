//! Windows: grouping an unbounded keyed stream into finite panes, in event time or
//! processing time — the Beam model.
//!
//! A window operator is configured by a [`WindowSpec`]: which windows a record belongs to
//! ([`Windows`]), when a window emits a pane ([`Trigger`]), how successive panes of a
//! window relate ([`Accumulation`]), and how long a window waits for late records
//! (allowed lateness). A pane's value comes from an [`Aggregate`].
//!
//! ```
//! use rill_operators::prelude::*;
//! use rill_operators::window::{Sum, WindowSpec, Windows};
//! use rill_runtime::{Config, Dataflow, Runtime};
//!
//! // (key, value, event time in ms)
//! type E = (u32, i64, i64);
//! let events: Vec<E> = vec![(1, 1, 100), (1, 2, 900), (2, 5, 1500), (1, 4, 1200)];
//! let mut df = Dataflow::new();
//! let panes = df
//!     .vec_source("events", events)
//!     .key_by(|e: &E| e.0)
//!     .window(WindowSpec::event_time(Windows::tumbling(1000), |e: &E| e.2))
//!     .aggregate("sum", Sum::new(|e: &E| e.1))
//!     .collect("out");
//! Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
//! let mut got: Vec<_> = panes.take().into_iter().map(|p| (p.key, p.window.start, p.value)).collect();
//! got.sort();
//! assert_eq!(got, vec![(1, 0, 3), (1, 1000, 4), (2, 1000, 5)]);
//! ```
//!
//! ## Semantics
//!
//! - A watermark `W` says no more records with event time `< W` will come. A window is
//!   late once `W >= end` and garbage-collected once `W >= end + lateness`: its state is
//!   dropped, and later records for it are dropped and counted (or sent to the late side
//!   output of [`WindowedStream::aggregate_with_late`]). For session windows the window a
//!   record is judged by is its own `[t, t + gap)` merged with the live sessions it
//!   overlaps, so a late record that bridges into a live session is kept (Flink's rule).
//! - Pane timing: `EARLY` if fired while `W < end`; otherwise `ON_TIME` if the window is
//!   holding, else `LATE`. A window starts holding when a record is added while
//!   `W < end` and stops when it emits a non-early pane; a merged window holds if any of
//!   its parts did. Panes are numbered from 0 per window; a merged window is a new window.
//! - The on-time firing of [`Trigger::AfterWatermark`] happens even when no record arrived
//!   since the previous pane (the pane carries the aggregate of nothing). Other firings
//!   emit only when records arrived since the previous pane. At garbage collection a
//!   final pane fires only if records arrived since the previous firing. The pane fired
//!   at garbage collection, or when the trigger finishes, is marked last.
//! - Accumulation: discarding panes hold the records since the previous firing;
//!   accumulating panes hold all of them; retracting panes are accumulating and are
//!   preceded by the retraction of the window's previous value (and, for the first pane of
//!   a merged window, of the last values of the windows merged into it).
//! - Where Beam and Flink differ, rill follows Beam, except for the late-bridging session
//!   rule above. Differences from Beam: the on-time pane is guaranteed for
//!   `AfterWatermark` only (Beam also emits an empty `ON_TIME` pane at garbage
//!   collection for other triggers); count windows exist (as in Flink), and a partial
//!   count window fires when the input ends.
//! - The operator forwards its input watermark; panes are not held back by it, so a
//!   late pane may be late for a downstream event-time operator too.
//!
//! ## Cascaded windows: panes carry event time
//!
//! A pane's event time is the last instant of its window, [`Pane::timestamp`] =
//! `window.end - 1` (Flink's rule). [`WindowSpec::timestamped`] windows records by the
//! time they carry ([`Timestamped`], which panes implement), so a window over the panes
//! of another one, e.g. a count per key per window and then the largest count per window
//! (NEXMark q5), needs no time picked by hand and never finds an on-time pane late, on
//! any number of shards. Placing a pane at `window.start` instead would put it in a
//! downstream window that closed long before (see the example of
//! [`WindowSpec::timestamped`]).
//!
//! ## Modules
//!
//! The submodules form layers, lowest first; a module uses only modules of lower layers
//! (or of its own layer, without a cycle), naming the module that defines what it uses
//! (`super::pane::Window`, not the re-export `crate::window::Window`).
//! `runtime/tests/layers.rs` keeps it so.
//!
//! 0. `pane` — windows, panes and their timing: the words of the model.
//! 1. `assigner`, `trigger`, `aggregate` — which windows a record belongs to, when a
//!    window fires, what a pane's value is.
//! 2. `slices`, `accs`, `slices_tests`, `max_by` — the slice grid and the state of
//!    tumbling and sliding windows (per slice, a tracked table or a plain map); the
//!    largest record by a value.
//! 3. `spec` — a window operator's configuration and counters.
//! 4. `timestamped`, `state` — pane event time; what the window operators share (their
//!    driver, timers, checkpoint sections).
//! 5. `operator`, `sliced`, `on_time`, `top` — the three window operators, and the top
//!    keys per window (Window Top-N).
//! 6. `pre_aggregate` — aggregation before the key exchange.
//! 7. `stream`, `all` — windowed streams, keyed and not: what picks the operator.

mod accs;
mod aggregate;
mod all;
mod assigner;
mod max_by;
mod on_time;
mod operator;
mod pane;
mod pre_aggregate;
mod sliced;
mod slices;
#[cfg(test)]
mod slices_tests;
mod spec;
mod state;
mod stream;
mod timestamped;
mod top;
mod trigger;

pub use crate::summable::Summable;
pub use aggregate::{Aggregate, Collect, Count, Max, Min, Sum};
pub use all::{AllWindowedStream, WindowAll};
pub use assigner::{InvalidWindows, Windows};
pub use max_by::MaxBy;
pub use pane::{AllPane, Pane, Timing, TopPane, Window};
pub use rill_runtime::state::TimeDomain;
pub use spec::{Accumulation, WindowMetrics, WindowSpec};
pub use stream::WindowedStream;
pub use timestamped::Timestamped;
pub use trigger::{ProcessingDelay, Trigger, TriggerContext, TriggerProgram};
