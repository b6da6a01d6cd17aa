//! Value parsers for duration flags (issue 8 item 8): a NaN, negative, zero or absurdly large
//! value is a clap usage error naming the flag's accepted range, never a panic in
//! `Duration::from_secs_f64` later on.

/// The largest duration any flag accepts: one year, in seconds.
pub const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// Parses a number of seconds: finite, greater than 0, at most one year.
pub fn seconds(s: &str) -> Result<f64, String> {
    bounded(s, MAX_SECONDS, "seconds")
}

/// Parses a number of seconds that may be 0: finite, 0 or more, at most one year.
pub fn seconds_or_zero(s: &str) -> Result<f64, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    bounded(s, MAX_SECONDS, "seconds")
}

/// Parses a number of hours: finite, 0 or more, at most ten years.
pub fn hours(s: &str) -> Result<f64, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    bounded(s, 10.0 * 365.0 * 24.0, "hours")
}

fn bounded(s: &str, max: f64, unit: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of {unit}"))?;
    if !v.is_finite() || v <= 0.0 || v > max {
        return Err(format!(
            "'{s}' is out of range: give a number of {unit} greater than 0 and at most {max}"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_values() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("60"), Ok(60.0));
        assert_eq!(hours("24"), Ok(24.0));
    }

    #[test]
    fn refuses_nan_negative_zero_huge_and_text() {
        for bad in ["NaN", "nan", "-1", "0", "inf", "1e300", "abc", ""] {
            assert!(seconds(bad).is_err(), "{bad} was accepted");
        }
        assert!(hours("-3").is_err());
        assert_eq!(hours("0"), Ok(0.0));
    }
}
