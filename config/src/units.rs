//! Durations (`"250ms"`, `"1.5s"`) and sizes (`65536`, `"100MiB"`) as users write them.

use std::time::Duration;

use crate::raw::IntOrText;

/// Longest duration accepted: one year. Far beyond any sensible timeout, and small enough
/// that `Instant::now() + d` and timer wheels never overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a positive duration: a decimal number directly followed by `ms`, `s`, `m` or `h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "\"{text}\" is not a duration; write a number with a unit (ms, s, m, h), such as \"5s\""
        ));
    }
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "" => {
            return Err(format!(
                "\"{text}\" has no unit; write it with ms, s, m or h, such as \"{text}s\""
            ))
        }
        other => {
            return Err(format!(
                "unknown duration unit \"{other}\"; use ms, s, m or h"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.ends_with('.')) {
        return Err(format!(
            "\"{text}\" is not a valid number with a unit, such as \"1.5s\""
        ));
    }
    let too_long = || {
        format!(
            "\"{text}\" is too long; at most {}h",
            MAX_DURATION.as_secs() / 3600
        )
    };
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    // Twelve fractional digits are finer than a nanosecond for every unit; the rest are
    // dropped so the arithmetic below cannot overflow.
    let fraction = &fraction[..fraction.len().min(12)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| too_long())?;
        digits * unit_nanos / 10u128.pow(fraction.len() as u32)
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_long)?;
    if nanos == 0 {
        return Err("must be greater than zero".to_owned());
    }
    if nanos > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let secs = (nanos / NANOS_PER_SEC) as u64;
    let subsec = (nanos % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Parses a byte count: a non-negative integer, or a string of digits and a unit: B, KB, MB,
/// GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), optionally separated by a space.
pub(crate) fn parse_size(value: &IntOrText) -> Result<u64, String> {
    let text = match value {
        IntOrText::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("must not be negative, got {n}"))
        }
        IntOrText::Text(text) => text,
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "\"{text}\" is not a size; write whole bytes or a whole number with a unit, such as \"64KiB\""
        ));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "\"{text}\": sizes are whole numbers; use a smaller unit"
        ));
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let multiplier: u64 = match unit {
        "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "" => {
            return Err(format!(
                "\"{text}\" has no unit; write a plain integer for bytes, or add B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
        other => {
            return Err(format!(
                "unknown size unit \"{other}\"; use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> Result<u64, String> {
        parse_size(&IntOrText::Text(text.to_owned()))
    }

    #[test]
    fn durations_with_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn durations_with_fractions() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.1s"), Ok(Duration::from_millis(1100)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn zero_durations_are_rejected() {
        for text in ["0s", "0ms", "0.0h", "0.0000000000001s"] {
            assert_eq!(
                parse_duration(text),
                Err("must be greater than zero".into()),
                "{text}"
            );
        }
    }

    #[test]
    fn durations_without_unit_or_number_are_rejected() {
        let err = parse_duration("5").unwrap_err();
        assert!(err.contains("has no unit"), "{err}");
        for text in ["", "s", "ms", "-5s", " 5s", "five seconds"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("is not a duration"), "{text}: {err}");
        }
        let err = parse_duration("5sec").unwrap_err();
        assert_eq!(err, "unknown duration unit \"sec\"; use ms, s, m or h");
        assert!(parse_duration("5 s")
            .unwrap_err()
            .contains("unknown duration unit"));
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for text in [".5s", "1.s", "1.2.3s", "1..2s"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("not a valid number"), "{text}: {err}");
        }
    }

    #[test]
    fn huge_durations_are_rejected() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for text in ["8761h", "99999999999999999999999999999999999999999h"] {
            assert!(
                parse_duration(text).unwrap_err().contains("too long"),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_as_integers() {
        assert_eq!(parse_size(&IntOrText::Int(0)), Ok(0));
        assert_eq!(parse_size(&IntOrText::Int(8192)), Ok(8192));
        assert_eq!(
            parse_size(&IntOrText::Int(-1)),
            Err("must not be negative, got -1".into())
        );
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(size("512B"), Ok(512));
        assert_eq!(size("64KB"), Ok(64_000));
        assert_eq!(size("2MB"), Ok(2_000_000));
        assert_eq!(size("1GB"), Ok(1_000_000_000));
        assert_eq!(size("64KiB"), Ok(65_536));
        assert_eq!(size("100MiB"), Ok(100 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("1 MiB"), Ok(1 << 20));
    }

    #[test]
    fn bad_sizes_are_rejected() {
        assert!(size("100").unwrap_err().contains("has no unit"));
        assert!(size("MiB").unwrap_err().contains("is not a size"));
        assert!(size("-1MiB").unwrap_err().contains("is not a size"));
        assert!(size("1.5MiB")
            .unwrap_err()
            .contains("sizes are whole numbers"));
        assert!(size("10mb")
            .unwrap_err()
            .contains("unknown size unit \"mb\""));
        assert!(size("99999999999GiB").unwrap_err().contains("too large"));
        assert!(size("99999999999999999999999B")
            .unwrap_err()
            .contains("too large"));
    }
}
