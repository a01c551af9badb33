//! Resource quantities written the way Kubernetes users write them: CPU as cores or millicores
//! (`2`, `1.5`, `500m`), memory as bytes with a decimal or binary suffix (`512Mi`, `2Gi`, `1G`,
//! `1000`). Parsing is exact (no floating point) and rejects negative, empty and overflowing
//! values.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// CPU in millicores (`1` core = `1000`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millicores(pub u64);

/// Memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

/// Why a quantity did not parse (the caller adds the field's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError(pub String);

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-negative decimal `int[.frac]` scaled by `10^scale_digits`, exactly; `None` when the
/// text is not such a number, has more fractional digits than the scale keeps, or overflows.
fn scaled_decimal(text: &str, scale_digits: u32) -> Option<u64> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale_digits as usize {
        return None;
    }
    let scale = 10u64.checked_pow(scale_digits)?;
    let int_value: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_value: u64 = if frac.is_empty() {
        0
    } else {
        let digits: u64 = frac.parse().ok()?;
        digits.checked_mul(10u64.checked_pow(scale_digits - frac.len() as u32)?)?
    };
    int_value.checked_mul(scale)?.checked_add(frac_value)
}

impl Millicores {
    pub fn parse(text: &str) -> Result<Millicores, QuantityError> {
        let t = text.trim();
        let bad = || {
            QuantityError(format!(
                "cannot parse {text:?} as CPU: use cores (2, 0.5) or millicores (500m), not negative"
            ))
        };
        let value = match t.strip_suffix('m') {
            Some(milli) => scaled_decimal(milli, 0),
            None => scaled_decimal(t, 3),
        };
        value.map(Millicores).ok_or_else(bad)
    }
}

impl fmt::Display for Millicores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: [(&str, u32); 6] = [
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

impl Bytes {
    pub fn parse(text: &str) -> Result<Bytes, QuantityError> {
        let t = text.trim();
        let bad = || {
            QuantityError(format!(
                "cannot parse {text:?} as memory: use bytes with an optional suffix \
                 (512Mi, 2Gi, 1G, 1000000), not negative"
            ))
        };
        for (suffix, shift) in BINARY {
            if let Some(number) = t.strip_suffix(suffix) {
                // exact: value * 2^shift, allowing fractions that land on whole bytes
                let digits = number
                    .split_once('.')
                    .map_or(0, |(_, frac)| frac.trim_end_matches('0').len() as u32);
                let scaled = scaled_decimal(number, digits).ok_or_else(bad)?;
                let numerator = u128::from(scaled) << shift;
                let denominator = 10u128.pow(digits);
                if numerator % denominator != 0 {
                    return Err(bad());
                }
                return u64::try_from(numerator / denominator)
                    .map(Bytes)
                    .map_err(|_| bad());
            }
        }
        for (suffix, exp) in DECIMAL {
            if let Some(number) = t.strip_suffix(suffix) {
                return scaled_decimal(number, exp).map(Bytes).ok_or_else(bad);
            }
        }
        scaled_decimal(t, 0).map(Bytes).ok_or_else(bad)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, shift) in BINARY.iter().rev() {
            let unit = 1u64 << shift;
            if self.0 != 0 && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Accepts a string (`"500m"`, `"2Gi"`) or a non-negative JSON/YAML number (cores or bytes).
struct QuantityVisitor<T> {
    parse: fn(&str) -> Result<T, QuantityError>,
    what: &'static str,
}

impl<T> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} quantity (a string such as \"500m\" or \"2Gi\", or a number)",
            self.what
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Millicores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor {
            parse: Millicores::parse,
            what: "CPU",
        })
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor {
            parse: Bytes::parse,
            what: "memory",
        })
    }
}

impl Serialize for Millicores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_cores_and_millicores() {
        for (text, milli) in [
            ("1", 1000),
            ("0.5", 500),
            ("1.25", 1250),
            ("250m", 250),
            (".1", 100),
            ("0", 0),
        ] {
            assert_eq!(Millicores::parse(text), Ok(Millicores(milli)), "{text}");
        }
        for text in [
            "-1",
            "",
            "m",
            "1.0005",
            "abc",
            "1e3",
            "2mm",
            "18446744073709551616",
        ] {
            assert!(Millicores::parse(text).is_err(), "{text} must be refused");
        }
    }

    #[test]
    fn memory_with_suffixes() {
        for (text, bytes) in [
            ("1000", 1000u64),
            ("1k", 1000),
            ("512Mi", 512 << 20),
            ("2Gi", 2 << 30),
            ("1.5Gi", 3 << 29),
            ("1G", 1_000_000_000),
            ("0.5Ki", 512),
        ] {
            assert_eq!(Bytes::parse(text), Ok(Bytes(bytes)), "{text}");
        }
        for text in [
            "-1Gi",
            "1.5",
            "Gi",
            "2Gx",
            "1.0000001Ki",
            "16Ei",
            "99999999999E",
        ] {
            assert!(Bytes::parse(text).is_err(), "{text} must be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["500m", "2", "512Mi", "1000"] {
            let shown = if text.ends_with('m') || text.chars().all(|c| c.is_ascii_digit()) {
                Millicores::parse(text).map(|m| m.to_string())
            } else {
                Bytes::parse(text).map(|b| b.to_string())
            };
            assert_eq!(shown.as_deref(), Ok(text));
        }
        assert_eq!(Bytes(1024 * 1024 * 3).to_string(), "3Mi");
        assert_eq!(Millicores(1500).to_string(), "1500m");
    }
}
