//! Timestamps: event time and watermarks in milliseconds since the epoch.

/// A point in event time, in milliseconds. [`Timestamp::MIN`] and [`Timestamp::MAX`] stand
/// for minus and plus infinity: a final watermark of `MAX` closes every window.
pub type Timestamp = i64;

/// The watermark before any progress was made.
pub const MIN_WATERMARK: Timestamp = Timestamp::MIN;

/// The final watermark a bounded input ends with.
pub const MAX_WATERMARK: Timestamp = Timestamp::MAX;
