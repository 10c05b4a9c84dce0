//! The keyword options: `--accumulation` and `--aggregate`.

use std::fmt;

use super::{opt_err, ParseError};

/// Defines a keyword option: the enum, its `parse_*` function and `Display`.
macro_rules! keyword_option {
    ($(#[$doc:meta])* $name:ident, $parse:ident, $opt:literal,
     { $($(#[$vdoc:meta])* $variant:ident = $kw:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        #[doc = concat!("Parses `", $opt, "`.")]
        pub fn $parse(s: &str) -> Result<$name, ParseError> {
            match s.trim() {
                $($kw => Ok($name::$variant),)+
                _ => Err(opt_err($opt, s, concat!("expected one of" $(, " ", $kw)+))),
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($name::$variant => $kw),+ })
            }
        }
    };
}

keyword_option!(
    /// `--accumulation`: how successive panes of a window relate.
    AccumulationSpec, parse_accumulation, "--accumulation", {
        /// Each pane holds only what arrived since the previous one.
        Discarding = "discarding",
        /// Each pane holds everything so far.
        Accumulating = "accumulating",
        /// Each pane holds everything so far and retracts the previous pane.
        Retracting = "retracting",
    }
);

keyword_option!(
    /// `--aggregate`: the per-window aggregation of the values.
    AggregateSpec, parse_aggregate, "--aggregate", {
        /// Sum of the values.
        Sum = "sum",
        /// Number of records.
        Count = "count",
        /// Smallest value.
        Min = "min",
        /// Largest value.
        Max = "max",
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse::testing::err;

    #[test]
    fn keyword_options() {
        assert_eq!("retracting".parse(), Ok(AccumulationSpec::Retracting));
        assert_eq!(
            parse_accumulation(" discarding"),
            Ok(AccumulationSpec::Discarding)
        );
        assert_eq!("max".parse(), Ok(AggregateSpec::Max));
        assert_eq!(AggregateSpec::Count.to_string(), "count");
        let e = err("avg".parse::<AggregateSpec>());
        assert_eq!(e, "--aggregate \"avg\": expected one of sum count min max");
        assert!("sometimes".parse::<AccumulationSpec>().is_err());
    }
}
