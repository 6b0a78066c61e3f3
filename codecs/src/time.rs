//! Calendar formatting of Unix milliseconds (pure functions: the caller
//! reads the clock).

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms.div_euclid(1000));
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms.rem_euclid(1000)
    )
}

/// `YYMMDDhhmm` (UTC), as SMPP delivery receipts carry dates.
pub fn smpp_date(ms: i64) -> String {
    let (y, mo, d, h, mi, _) = civil(ms.div_euclid(1000));
    format!("{:02}{mo:02}{d:02}{h:02}{mi:02}", y.rem_euclid(100))
}

/// (year, month, day, hour, minute, second) of a Unix time in seconds.
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 { y + 1 } else { y },
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Unix milliseconds at 00:00 UTC of a `YYYY-MM-DD` date (a real one:
/// month 1–12, day within its month, years 1970–9999), else None.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = s.get(r)?;
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    // Howard Hinnant's days-from-civil, the inverse of `civil`.
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = days * 86_400_000;
    // A day past its month's end comes back as another date.
    let (cy, cm, cd, ..) = civil(days * 86_400);
    ((cy, i64::from(cm), i64::from(cd)) == (y, m, d)).then_some(ms)
}

/// Unix milliseconds of `YYYY-MM-DD`, or of `YYYY-MM-DDTHH:MM:SS[.fff]Z`
/// (UTC, as [`rfc3339`] writes it), else None.
pub fn parse_date_or_time(s: &str) -> Option<i64> {
    let day = parse_date(s.get(..10)?)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(day);
    }
    let rest = rest.strip_prefix('T')?.strip_suffix('Z')?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let b = hms.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = hms.get(r)?;
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())?
    };
    let (h, m, sec) = (num(0..2)?, num(3..5)?, num(6..8)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else if frac.len() <= 9 && frac.bytes().all(|c| c.is_ascii_digit()) {
        // Milliseconds from the first three digits (more are cut).
        format!("{frac:0<3}")[..3].parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(day + ((h * 60 + m) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_writes_them() {
        let t = 1_795_000_123_456;
        assert_eq!(parse_date_or_time(&rfc3339(t)), Some(t));
        assert_eq!(parse_date_or_time("2026-12-04"), parse_date("2026-12-04"));
        assert_eq!(
            parse_date_or_time("2026-12-04T01:02:03Z"),
            parse_date("2026-12-04").map(|d| d + 3_723_000)
        );
        for bad in [
            "2026-12-04T25:00:00Z",
            "2026-12-04T01:02:03",
            "2026-12-04 01:02:03Z",
            "2026-12-04T01:02:03.x1Z",
        ] {
            assert_eq!(parse_date_or_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_parse_to_midnight_utc_and_impossible_ones_do_not() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_date("2026-11-22"), Some(1_795_305_600_000));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "26-01-01",
            "2026/01/01",
            "",
            "1969-12-31",
            "2026-1-01",
            "+026-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_350_896_123), "2026-11-22T12:34:56.123Z");
        assert_eq!(smpp_date(1_795_350_896_000), "2611221234");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
