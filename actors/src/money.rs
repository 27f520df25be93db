//! Exact money: an amount in a currency, at the currency's minor-unit scale. Never a float.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A currency the node keeps accounts in, with its minor-unit scale. Serialized as its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    scale: u8,
}

/// The currencies the node knows: `EVG` (Evergreen credits) and common ISO 4217 ones.
const KNOWN: &[(&str, u8)] = &[
    ("EVG", 2),
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("JPY", 0),
    ("KRW", 0),
];

impl Currency {
    pub const EVG: Currency = Currency {
        code: *b"EVG",
        scale: 2,
    };
    pub const USD: Currency = Currency {
        code: *b"USD",
        scale: 2,
    };

    /// A known currency by its code (case-insensitive).
    pub fn parse(code: &str) -> Option<Currency> {
        let upper = code.trim().to_ascii_uppercase();
        KNOWN.iter().find(|(c, _)| *c == upper).map(|(c, scale)| {
            let bytes = c.as_bytes();
            Currency {
                code: [bytes[0], bytes[1], bytes[2]],
                scale: *scale,
            }
        })
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point of the minor unit.
    pub fn scale(&self) -> u32 {
        u32::from(self.scale)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown currency {code}")))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an amount is not acceptable money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be greater than zero")]
    NotPositive,
    #[error("has more decimals than {0} allows")]
    TooPrecise(Currency),
    #[error("is too large")]
    TooLarge,
}

/// A positive amount in a currency, exactly representable in its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (cents for USD).
    minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount of at least one minor unit, with no more decimals than the currency has.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        let scaled = amount
            .checked_mul(Decimal::from(10_i64.pow(currency.scale())))
            .ok_or(MoneyError::TooLarge)?;
        if scaled.fract() != Decimal::ZERO {
            return Err(MoneyError::TooPrecise(currency));
        }
        let minor = i64::try_from(scaled).map_err(|_| MoneyError::TooLarge)?;
        Ok(Money { minor, currency })
    }

    /// From minor units; `None` unless positive.
    pub fn from_minor(minor: i64, currency: Currency) -> Option<Money> {
        (minor > 0).then_some(Money { minor, currency })
    }

    /// From stored minor units, which the store keeps positive; a non-positive value (a
    /// corrupt row) reads as one minor unit rather than failing the whole read.
    pub fn from_stored(minor: i64, currency: Currency) -> Money {
        Money {
            minor: minor.max(1),
            currency,
        }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn amount(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.scale())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount(), self.currency)
    }
}

/// A decimal written the plain way: an optional `-`, digits, and optionally `.` and digits
/// (`"12"`, `"12.50"`, `"-3"`). No exponent (`"1e3"`), no `+`, no separators, no blanks:
/// `Decimal::from_str` accepts some of those, and an amount on a money path must mean exactly
/// what it shows. At most 40 characters.
pub fn parse_plain_decimal(raw: &str) -> Option<Decimal> {
    const CHARS_MAX: usize = 40;
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if raw.len() > CHARS_MAX || !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return None;
    }
    raw.parse().ok()
}

/// A minor-unit balance shown as a decimal of its currency.
pub fn decimal(minor: i64, currency: Currency) -> Decimal {
    Decimal::new(minor, currency.scale())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts_must_fit_the_minor_unit() {
        let usd = Currency::parse("usd").expect("known");
        assert_eq!(
            Money::new(Decimal::from_str("1.25").expect("d"), usd).map(|m| m.minor()),
            Ok(125)
        );
        assert_eq!(
            Money::new(Decimal::from_str("1.255").expect("d"), usd),
            Err(MoneyError::TooPrecise(usd))
        );
        assert_eq!(Money::new(Decimal::ZERO, usd), Err(MoneyError::NotPositive));
        assert_eq!(
            Money::new(Decimal::from(-3), usd),
            Err(MoneyError::NotPositive)
        );
        let jpy = Currency::parse("JPY").expect("known");
        assert!(Money::new(Decimal::from_str("0.5").expect("d"), jpy).is_err());
        assert!(Money::new(Decimal::MAX, usd).is_err());
        assert!(Currency::parse("XXX").is_none());
    }

    #[test]
    fn only_plain_decimals_parse() {
        for good in ["0", "12", "12.50", "-3", "007.10"] {
            assert!(parse_plain_decimal(good).is_some(), "{good}");
        }
        for bad in [
            "", "1e3", "1E3", "+1", "1.", ".5", "1_000", " 1", "1 ", "--1", "1.2.3", "abc",
        ] {
            assert!(parse_plain_decimal(bad).is_none(), "{bad}");
        }
        assert!(parse_plain_decimal(&"9".repeat(41)).is_none());
    }
}
