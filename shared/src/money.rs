//! Money as integer cents. MySQL stores DECIMAL; Rust never holds a float amount.
//!
//! Amounts cross the SQL boundary as decimal strings (`"12.30"`), which MySQL converts to
//! DECIMAL exactly, and come back as `CAST(col * 100 AS SIGNED)`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::OmsError;

/// An amount of money in cents. Negative amounts are representable (deltas) but prices
/// and totals are never negative.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl Cents {
    pub const ZERO: Cents = Cents(0);

    pub(crate) fn checked_mul(self, qty: i64) -> Option<Cents> {
        self.0.checked_mul(qty).map(Cents)
    }

    pub(crate) fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

impl std::ops::Add for Cents {
    type Output = Cents;
    fn add(self, rhs: Cents) -> Cents {
        Cents(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Cents {
    fn add_assign(&mut self, rhs: Cents) {
        self.0 += rhs.0;
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        Cents(iter.map(|c| c.0).sum())
    }
}

/// Formats as a DECIMAL string with two decimals: `Cents(123450)` → `"1234.50"`.
impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Parses `"12"`, `"12.3"`, `"12.30"` (and a leading `-`); rejects more than two decimals,
/// exponents, spaces, empty parts and amounts that overflow.
impl FromStr for Cents {
    type Err = OmsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || OmsError::InvalidAmount(s.to_string());
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = match body.split_once('.') {
            Some((w, f)) => (w, f),
            None => (body, ""),
        };
        if whole.is_empty() || frac.len() > 2 || (body.contains('.') && frac.is_empty()) {
            return Err(bad());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac))
            .ok_or_else(bad)?;
        Ok(Cents(if negative { -cents } else { cents }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_two_decimals() {
        assert_eq!(Cents(123450).to_string(), "1234.50");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(0).to_string(), "0.00");
        assert_eq!(Cents(-199).to_string(), "-1.99");
    }

    #[test]
    fn parses_decimal_strings() {
        assert_eq!("12".parse::<Cents>().unwrap(), Cents(1200));
        assert_eq!("12.3".parse::<Cents>().unwrap(), Cents(1230));
        assert_eq!("12.34".parse::<Cents>().unwrap(), Cents(1234));
        assert_eq!("0.05".parse::<Cents>().unwrap(), Cents(5));
        assert_eq!("-1.99".parse::<Cents>().unwrap(), Cents(-199));
    }

    #[test]
    fn rejects_what_is_not_a_two_decimal_amount() {
        for bad in [
            "",
            ".5",
            "1.",
            "1.234",
            "1e3",
            " 1",
            "1,00",
            "abc",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Cents>().is_err(), "{bad:?} should be rejected");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_then_parse_round_trips(c in -1_000_000_000_000i64..1_000_000_000_000) {
            proptest::prop_assert_eq!(c, Cents(c).to_string().parse::<Cents>().unwrap().0);
        }
    }
}
