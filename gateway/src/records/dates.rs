//! Calendar dates (UTC) for admin queries: `YYYY-MM-DD` days and ISO weeks `YYYY-Www`, as
//! milliseconds since the epoch. Small enough not to warrant a date-time dependency.

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Start of the UTC day `YYYY-MM-DD`, in ms.
pub fn parse_day(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a date YYYY-MM-DD");
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || -> Result<i64, String> {
        parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next()?, next()?, next()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    if civil_from_days(days) != (y, m as u32, d as u32) {
        return Err(bad());
    }
    Ok((days * DAY_MS) as u64)
}

/// Start (Monday 00:00 UTC) and end (next Monday) of ISO week `YYYY-Www`, in ms.
pub fn parse_week(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{text}` is not an ISO week YYYY-Www (e.g. 2025-W46)");
    let (y, w) = text.trim().split_once("-W").ok_or_else(bad)?;
    let y: i64 = y.parse().map_err(|_| bad())?;
    let w: i64 = w.parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&y) || !(1..=weeks_in(y)).contains(&w) {
        return Err(bad());
    }
    let start = week1_monday(y) + (w - 1) * 7;
    Ok(((start * DAY_MS) as u64, ((start + 7) * DAY_MS) as u64))
}

/// The ISO week containing `ms`, as `YYYY-Www`.
pub fn week_of(ms: u64) -> String {
    let days = (ms as i64).div_euclid(DAY_MS);
    let (y, _, _) = civil_from_days(days);
    let year = [y + 1, y, y - 1]
        .into_iter()
        .find(|&c| week1_monday(c) <= days)
        .unwrap_or(y);
    let week = (days - week1_monday(year)) / 7 + 1;
    format!("{year}-W{week:02}")
}

/// Monday of ISO week 1 (the week with January 4th), in days since the epoch.
fn week1_monday(y: i64) -> i64 {
    let jan4 = days_from_civil(y, 1, 4);
    // 1970-01-01 was a Thursday: weekday 0 = Monday.
    let weekday = (jan4 + 3).rem_euclid(7);
    jan4 - weekday
}

fn weeks_in(y: i64) -> i64 {
    (week1_monday(y + 1) - week1_monday(y)) / 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_weeks() {
        assert_eq!(parse_day("1970-01-02").unwrap(), 86_400_000);
        assert!(parse_day("2025-02-30").is_err());
        assert!(parse_day("soon").is_err());
        // 2025-11-10 is the Monday of ISO week 46.
        let (start, end) = parse_week("2025-W46").unwrap();
        assert_eq!(start, parse_day("2025-11-10").unwrap());
        assert_eq!(end - start, 7 * 86_400_000);
        assert_eq!(week_of(start + 3_600_000), "2025-W46");
        // 2021-01-03 belongs to 2020-W53.
        assert_eq!(week_of(parse_day("2021-01-03").unwrap()), "2020-W53");
        assert!(parse_week("2021-W53").is_err());
    }
}
