//! cpu and memory quantities for NodeResourcesFit, in *milli-units* (`i128`), on top of
//! `apiserver::api::parse_quantity` (shared with the volume controller).

/// Parses a quantity into milli-units, rounding a finer fraction up (Kubernetes' `MilliValue`).
/// Returns `None` for text that is not a quantity.
pub fn parse_milli(text: &str) -> Option<i128> {
    let nano = apiserver::api::parse_quantity(text)?.0;
    const PER_MILLI: i128 = 1_000_000;
    Some(if nano >= 0 {
        (nano + PER_MILLI - 1) / PER_MILLI
    } else {
        nano / PER_MILLI
    })
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("5Gi"), Some(5 * (1 << 30) * 1000));
        assert_eq!(parse_milli("1k"), Some(1_000_000));
        assert_eq!(parse_milli("1n"), Some(1));
        assert_eq!(parse_milli("Gi"), None);
    }
}
