//! `resource.Quantity` as numbers. Binding compares capacities numerically (`1Gi` =
//! 1073741824 bytes is more than `1G` = 10^9 bytes), so the strings must be parsed.
//!
//! A parsed quantity is held in nano-units in an `i128`: the largest suffix (`Ei`, 2^60)
//! times 10^9 still fits with room to spare, and sub-nano digits (which storage quantities
//! never carry) are rounded up, as upstream rounds a Quantity up to its smallest scale.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity in nano-units (value × 10^9). Ordered numerically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ParsedQuantity(pub i128);

impl ParsedQuantity {
    /// The value in whole units, rounded up (bytes, for storage).
    pub fn ceil_units(self) -> i128 {
        let n = NANO;
        if self.0 >= 0 {
            (self.0 + n - 1) / n
        } else {
            self.0 / n
        }
    }
}

const NANO: i128 = 1_000_000_000;

/// Parses a Kubernetes quantity string (`5Gi`, `500M`, `1.5Ti`, `1e3`, `100m`).
/// Returns `None` for text that is not a quantity.
pub fn parse_quantity(s: &str) -> Option<ParsedQuantity> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Split the number (digits and one optional '.') from the suffix.
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    // Mantissa as an integer with `scale` decimal digits after the point.
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add((c as u8 - b'0') as i128)?;
    }
    let scale = frac_part.len() as i32;
    // (multiplier, decimal exponent) of the suffix.
    let (mult, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        other if other.starts_with('e') || other.starts_with('E') => {
            let e: i32 = other[1..].parse().ok()?;
            if !(-60..=60).contains(&e) {
                return None;
            }
            (1, e)
        }
        _ => return None,
    };
    // value = mantissa * mult * 10^(exp10 - scale); nanos = value * 10^9.
    let mut v = mantissa.checked_mul(mult)?;
    let shift = exp10 - scale + 9;
    if shift >= 0 {
        for _ in 0..shift {
            v = v.checked_mul(10)?;
        }
    } else {
        let mut div: i128 = 1;
        for _ in 0..(-shift) {
            div = div.checked_mul(10)?;
        }
        // Round up (away from zero for positives), like Quantity.RoundUp.
        v = (v + div - 1) / div;
    }
    Some(ParsedQuantity(if neg { -v } else { v }))
}

/// Parses a `Quantity`; an unparsable one counts as zero (validation rejects those at the API
/// boundary, so this only guards against hand-edited stored objects).
pub fn quantity_value(q: &Quantity) -> ParsedQuantity {
    parse_quantity(&q.0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> i128 {
        parse_quantity(s).unwrap().ceil_units()
    }

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(b("1Gi"), 1_073_741_824);
        assert_eq!(b("1G"), 1_000_000_000);
        assert!(parse_quantity("1Gi") > parse_quantity("1G"));
        assert_eq!(b("5Gi"), 5 * 1_073_741_824);
        assert_eq!(b("1.5Ki"), 1536);
        assert_eq!(b("1e3"), 1000);
        assert_eq!(b("100"), 100);
        assert_eq!(parse_quantity("100m").unwrap().0, 100_000_000);
        assert_eq!(b("1Ei"), 1 << 60);
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "Gi", "1.2.3", "1Qi", "abc", "."] {
            assert!(parse_quantity(s).is_none(), "{s}");
        }
    }
}
