//! `resource.Quantity` as apimachinery parses and canonicalizes it.
//!
//! Kept exact (an `i128` count of nano-units) because binding compares sizes numerically
//! (1Gi > 1G) and because kube-apiserver stores quantities in canonical form
//! (`1.5Gi` → `1536Mi`, `1000` → `1k`), which is what clients read back.

/// The regular expression kube-apiserver quotes when a quantity does not parse.
pub const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

/// A parsed quantity: `nanos` is the value × 10⁹ (values finer than 1n round up, as upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let (neg, int_part, frac_part, suffix) = Quantity::split(s)?;
        let err = || QUANTITY_ERROR.to_string();
        // value = digits × 10^(-frac_len) × multiplier, where digits are the integer and
        // fraction digits together without leading zeros: at most 30 of them, so the mantissa
        // always fits (accumulated here: every write parses its quantities several times).
        let mut mant: i128 = 0;
        let mut significant = 0;
        for &d in int_part.as_bytes().iter().chain(frac_part.as_bytes()) {
            if significant == 0 && d == b'0' {
                continue;
            }
            significant += 1;
            if significant > 30 {
                return Err(err());
            }
            mant = mant * 10 + i128::from(d - b'0');
        }
        Quantity::scaled(neg, mant, frac_part.len() as i32, suffix)
    }

    /// Sign, integer digits, fraction digits and suffix of a quantity's text.
    fn split(s: &str) -> Result<(bool, &str, &str, &str), String> {
        let s = s.trim();
        let err = || QUANTITY_ERROR.to_string();
        if s.is_empty() {
            return Err("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into());
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut neg = false;
        if b[0] == b'+' || b[0] == b'-' {
            neg = b[0] == b'-';
            i = 1;
        }
        let num_start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let number = &s[num_start..i];
        if number.is_empty() || number.matches('.').count() > 1 || number == "." {
            return Err(err());
        }
        let suffix = &s[i..];
        let (int_part, frac_part) = match number.split_once('.') {
            Some((a, f)) => (a, f),
            None => (number, ""),
        };
        Ok((neg, int_part, frac_part, suffix))
    }

    /// The quantity `±mant × 10^(-frac_len)` with `suffix`'s multiplier.
    fn scaled(neg: bool, mant: i128, frac_len: i32, suffix: &str) -> Result<Quantity, String> {
        let err = || QUANTITY_ERROR.to_string();
        let (format, base2, exp10): (Format, u32, i32) = match suffix {
            "" => (Format::DecimalSI, 0, 0),
            "n" => (Format::DecimalSI, 0, -9),
            "u" => (Format::DecimalSI, 0, -6),
            "m" => (Format::DecimalSI, 0, -3),
            "k" => (Format::DecimalSI, 0, 3),
            "M" => (Format::DecimalSI, 0, 6),
            "G" => (Format::DecimalSI, 0, 9),
            "T" => (Format::DecimalSI, 0, 12),
            "P" => (Format::DecimalSI, 0, 15),
            "E" => (Format::DecimalSI, 0, 18),
            "Ki" => (Format::BinarySI, 10, 0),
            "Mi" => (Format::BinarySI, 20, 0),
            "Gi" => (Format::BinarySI, 30, 0),
            "Ti" => (Format::BinarySI, 40, 0),
            "Pi" => (Format::BinarySI, 50, 0),
            "Ei" => (Format::BinarySI, 60, 0),
            s if s.starts_with('e') || s.starts_with('E') => {
                let e: i32 = s[1..].parse().map_err(|_| err())?;
                if !(-30..=30).contains(&e) {
                    return Err(err());
                }
                (Format::DecimalExponent, 0, e)
            }
            _ => return Err(err()),
        };
        // nanos = mant × 2^base2 × 10^(exp10 - frac_len + 9), rounding up any remainder.
        let mut v = mant.checked_mul(1i128 << base2).ok_or_else(err)?;
        let e = exp10 - frac_len + 9;
        if e >= 0 {
            v = v
                .checked_mul(10i128.checked_pow(e as u32).ok_or_else(err)?)
                .ok_or_else(err)?;
        } else {
            let d = 10i128.checked_pow((-e) as u32).unwrap_or(i128::MAX);
            let q = v / d;
            v = if v % d != 0 { q + 1 } else { q };
        }
        // Upstream caps at 2^63-1 (in the unit); keep the same bound.
        let max = (i64::MAX as i128) * NANO;
        if v > max {
            v = max;
        }
        Ok(Quantity {
            nanos: if neg { -v } else { v },
            format,
        })
    }

    /// The value in whole units, rounded up (like `Quantity.Value()`).
    pub fn value(&self) -> i128 {
        let q = self.nanos / NANO;
        if self.nanos % NANO > 0 {
            q + 1
        } else {
            q
        }
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Canonical form, as `Quantity.MarshalJSON` writes it.
    pub fn canonical(&self) -> String {
        let mut format = self.format;
        if self.nanos == 0 {
            return "0".into();
        }
        if format == Format::BinarySI {
            let abs = self.nanos.abs();
            if abs < 1024 * NANO || abs % NANO != 0 {
                format = Format::DecimalSI;
            }
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.abs();
        match format {
            Format::BinarySI => {
                let mut v = abs / NANO;
                let mut k = 0;
                while k < 6 && v % 1024 == 0 {
                    v /= 1024;
                    k += 1;
                }
                let suf = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
                spell(sign, v, suf)
            }
            Format::DecimalSI | Format::DecimalExponent => {
                // largest exponent e (multiple of 3, from -9) with abs divisible by 10^(e+9)
                let mut e = -9;
                let mut v = abs;
                while e < 18 && v % 1000 == 0 {
                    v /= 1000;
                    e += 3;
                }
                if format == Format::DecimalExponent {
                    if e == 0 {
                        return spell(sign, v, "");
                    }
                    return format!("{sign}{v}e{e}");
                }
                let suf = match e {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                spell(sign, v, suf)
            }
        }
    }
}

/// `format!("{sign}{v}{suf}")` without the formatting machinery (every quantity of every
/// write is written in canonical form).
fn spell(sign: &str, v: i128, suf: &str) -> String {
    let mut out = String::with_capacity(sign.len() + 39 + suf.len());
    out.push_str(sign);
    // SAFETY: `push_decimal` appends ASCII digits only.
    crate::store::core::push_decimal(unsafe { out.as_mut_vec() }, v.unsigned_abs());
    out.push_str(suf);
    out
}

/// Parses a quantity given as JSON (a string, or a number as YAML often produces).
pub fn parse_json(v: &serde_json::Value) -> Option<Quantity> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s).ok(),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Quantity::parse` as it was before it accumulated the mantissa itself: the digit-string
    /// mantissa is a copy, the specification the faster one is held to; splitting the text and
    /// scaling by the suffix are shared (they did not change).
    fn parse_before(s: &str) -> Result<Quantity, String> {
        let (neg, int_part, frac_part, suffix) = Quantity::split(s)?;
        let err = || QUANTITY_ERROR.to_string();
        // value = digits × 10^(-frac_len) × multiplier
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(err());
        }
        let mant: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| err())?
        };
        Quantity::scaled(neg, mant, frac_part.len() as i32, suffix)
    }

    #[test]
    fn parse_agrees_with_the_string_building_parser() {
        let mut inputs = vec![
            "0".to_string(),
            "000".into(),
            "0.000".into(),
            ".5".into(),
            "5.".into(),
            ".".into(),
            "1.2.3".into(),
            "-0012.0340".into(),
            "+7".into(),
            "1".repeat(30),
            "1".repeat(31),
            format!("000{}", "9".repeat(30)),
            format!("0.{}", "9".repeat(30)),
            format!("{}.{}", "9".repeat(15), "9".repeat(16)),
            format!("{}.{}", "9".repeat(15), "9".repeat(15)),
        ];
        for i in 0..3000u32 {
            let n = i.wrapping_mul(2_654_435_761);
            inputs.push(format!("{}.{:03}", n % 1000, n % 7));
            inputs.push(format!("{:0width$}", n, width = (i % 40) as usize));
            inputs.push(format!(
                "0.{:0width$}",
                n % 100_000,
                width = (i % 12) as usize
            ));
        }
        for number in inputs {
            for suffix in ["", "m", "n", "k", "Gi", "Ei", "E", "e3", "e-30", "x"] {
                let s = format!("{number}{suffix}");
                assert_eq!(Quantity::parse(&s), parse_before(&s), "{s}");
            }
        }
    }

    #[test]
    fn canonical_forms_match_apimachinery() {
        for (i, o) in [
            ("5Gi", "5Gi"),
            ("1.5Gi", "1536Mi"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1G", "1G"),
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1e3", "1e3"),
            ("1024", "1024"),
            ("512", "512"),
            ("0", "0"),
            ("2048Ki", "2Mi"),
        ] {
            assert_eq!(Quantity::parse(i).unwrap().canonical(), o, "{i}");
        }
        for v in [0i128, 1, 9, 10, 1536, 999_999, i64::MAX as i128, i128::MAX] {
            for (sign, suf) in [("", ""), ("-", "Mi"), ("", "k")] {
                assert_eq!(spell(sign, v, suf), format!("{sign}{v}{suf}"));
            }
        }
        assert!(Quantity::parse("5Gx").is_err());
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("1Gi").unwrap().nanos > Quantity::parse("1G").unwrap().nanos);
    }
}
