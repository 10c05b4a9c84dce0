//! [`Summable`]: numbers that sums add up, for the rolling sum of a keyed stream and the
//! window sum alike.

/// A value that [`Sum`](crate::window::Sum) and the rolling
/// [`KeyedStream::sum`](crate::KeyedStream::sum)
/// can add up: a zero and an addition that does not panic.
///
/// Implemented for every primitive integer (wrapping addition: a sum that overflows wraps
/// around, in debug and release builds alike) and for `f32` and `f64`.
///
/// ```
/// use rill_operators::window::Summable;
///
/// /// Cents, summed with saturation instead of wrapping.
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Cents(i64);
/// impl Summable for Cents {
///     const ZERO: Self = Cents(0);
///     fn add(self, other: Self) -> Self {
///         Cents(self.0.saturating_add(other.0))
///     }
/// }
/// assert_eq!(Cents(i64::MAX).add(Cents(1)), Cents(i64::MAX));
/// assert_eq!(i8::MAX.add(1), i8::MIN); // the built-in integers wrap
/// ```
pub trait Summable: Copy + 'static {
    /// The sum of nothing.
    const ZERO: Self;
    /// `self + other`.
    fn add(self, other: Self) -> Self;
}

macro_rules! summable_int {
    ($($t:ty),*) => {$(
        impl Summable for $t {
            const ZERO: Self = 0;
            #[inline]
            fn add(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
        }
    )*};
}
summable_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl Summable for f32 {
    const ZERO: Self = 0.0;
    #[inline]
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl Summable for f64 {
    const ZERO: Self = 0.0;
    #[inline]
    fn add(self, other: Self) -> Self {
        self + other
    }
}
