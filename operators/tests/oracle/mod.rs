//! What the oracles share: window assignment by brute force ([`brute`]).

mod brute;

pub use brute::windows_of;
use rill_operators::window::{Window, Windows};
use rill_runtime::Timestamp;
