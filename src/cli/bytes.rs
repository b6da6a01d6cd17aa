//! Value parser for byte-size flags (`--kernel-memory-limit`): a plain number of bytes or a
//! number with a unit, decimal (`k`, `M`, `G`, `T`: powers of 1000, as `docker --memory`
//! does not, but as `systemd` and Kubernetes `M`/`G` do) or binary (`Ki`, `Mi`, `Gi`, `Ti`,
//! and `KiB`…: powers of 1024). A `B` suffix is accepted. Zero, negative, NaN or a value over
//! 1 PiB is a clap usage error, never a silent "no limit".

/// The largest size accepted: 1 PiB.
const MAX_BYTES: f64 = 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0;

/// Parses `s` into bytes, e.g. `2G` → 2,000,000,000, `2GiB` → 2,147,483,648, `512M`,
/// `1048576`. Errors name the accepted forms.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("'{s}' is not a size: give bytes, or a number with a unit such as 512M, 2G, 1.5GiB")
    })?;
    let unit = unit.trim();
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let factor: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        "T" | "t" => 1e12,
        "Ki" | "ki" => 1024.0,
        "Mi" | "mi" => 1024.0 * 1024.0,
        "Gi" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" | "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}': use k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024)"
            ))
        }
    };
    let bytes = n * factor;
    if !bytes.is_finite() || !(1.0..=MAX_BYTES).contains(&bytes) {
        return Err(format!(
            "'{s}' is out of range: give at least 1 byte and at most 1 PiB"
        ));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("512M"), Ok(512_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(parse_bytes(" 300 MB "), Ok(300_000_000));
        for bad in ["", "0", "-1G", "NaN", "2X", "2 GB extra", "9999999T"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
