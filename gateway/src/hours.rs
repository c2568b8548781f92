//! Business hours per skill group (issue #17): outside them a hand-off does not queue for a
//! person nobody will be there to be; the customer is told when the group opens and may leave
//! a message instead.
//!
//! ```toml
//! [hours]
//! zone = "Asia/Shanghai"
//! holidays = ["2026-10-01"]
//! pre_sale = "09:00-24:00"
//! after_sale = "22:00-06:00"   # across midnight
//! ```
//! A group without a line is always open. Holidays close every group with hours all day.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::Deserialize;

/// `[hours]`: the zone, holiday dates and one `"HH:MM-HH:MM"` range per group.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HoursSettings {
    /// IANA zone the ranges are written in (default `Asia/Shanghai`).
    #[serde(default)]
    pub zone: Option<String>,
    /// Dates (`YYYY-MM-DD`, in `zone`) when groups with hours are closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Group name to its daily range.
    #[serde(flatten)]
    pub groups: BTreeMap<String, String>,
    #[serde(skip)]
    compiled: Option<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    tz: Tz,
    holidays: Vec<NaiveDate>,
    /// Minutes of the day: open from `.0` (inclusive) to `.1` (exclusive); `.1 < .0` spans
    /// midnight; `.1 == 1440` is the end of the day.
    ranges: BTreeMap<String, (u32, u32)>,
}

/// Whether a group takes chats now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    Now,
    /// Closed; opens at this time (ms since the epoch), if ever within a year.
    Closed {
        next_open_ms: Option<u64>,
    },
}

impl HoursSettings {
    /// Parses the zone, the dates and the ranges; the error names the bad value.
    pub fn compile(&mut self) -> Result<(), String> {
        let zone = self.zone.as_deref().unwrap_or("Asia/Shanghai");
        let tz: Tz = zone
            .parse()
            .map_err(|_| format!("`zone = {zone:?}` is not an IANA time zone name"))?;
        let holidays = self
            .holidays
            .iter()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| format!("holiday `{d}` is not a date like 2026-10-01"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ranges = self
            .groups
            .iter()
            .map(|(group, range)| {
                Ok((
                    group.clone(),
                    parse_range(range).map_err(|e| format!("`{group} = {range:?}`: {e}"))?,
                ))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        self.compiled = Some(Compiled {
            tz,
            holidays,
            ranges,
        });
        Ok(())
    }

    /// Whether `group` is open at `now_ms`.
    pub fn open(&self, group: &str, now_ms: u64) -> Open {
        let Some(c) = &self.compiled else {
            return Open::Now;
        };
        let Some(&(from, to)) = c.ranges.get(group) else {
            return Open::Now;
        };
        let Some(now) = c.tz.timestamp_millis_opt(ms_i64(now_ms)).single() else {
            return Open::Now;
        };
        let minute = now.hour() * 60 + now.minute();
        let today = now.date_naive();
        let open_on = |day: NaiveDate| !c.holidays.contains(&day);
        let yesterday = today.pred_opt().unwrap_or(today);
        let inside = if from < to {
            open_on(today) && minute >= from && minute < to
        } else {
            // Across midnight: the evening belongs to today, the small hours to yesterday.
            (open_on(today) && minute >= from) || (open_on(yesterday) && minute < to)
        };
        if inside {
            return Open::Now;
        }
        let mut day = today;
        for _ in 0..=366 {
            let starts_later = day != today || minute < from;
            if open_on(day) && starts_later {
                return Open::Closed {
                    next_open_ms: local_ms(&c.tz, day, from),
                };
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        Open::Closed { next_open_ms: None }
    }
}

/// `"09:00-24:00"` as minutes of the day.
fn parse_range(range: &str) -> Result<(u32, u32), String> {
    let (a, b) = range
        .split_once('-')
        .ok_or("expected a range like \"09:00-24:00\"")?;
    let minutes = |t: &str| -> Result<u32, String> {
        let t = t.trim();
        if t == "24:00" {
            return Ok(24 * 60);
        }
        let time =
            NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| format!("`{t}` is not HH:MM"))?;
        Ok(time.hour() * 60 + time.minute())
    };
    let (from, to) = (minutes(a)?, minutes(b)?);
    if from == to || from >= 24 * 60 {
        return Err("the range is empty".into());
    }
    Ok((from, to))
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// `minute` of `day` in `tz`, as ms since the epoch.
fn local_ms(tz: &Tz, day: NaiveDate, minute: u32) -> Option<u64> {
    let naive = day.and_hms_opt(minute / 60, minute % 60, 0)?;
    let at = tz.from_local_datetime(&naive).earliest()?;
    u64::try_from(at.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(groups: &[(&str, &str)], holidays: &[&str]) -> HoursSettings {
        let mut h = HoursSettings {
            zone: Some("Asia/Shanghai".into()),
            holidays: holidays.iter().map(|s| s.to_string()).collect(),
            groups: groups
                .iter()
                .map(|(g, r)| (g.to_string(), r.to_string()))
                .collect(),
            compiled: None,
        };
        h.compile().unwrap();
        h
    }

    /// 2026-12-02 at `h:m` in Shanghai (UTC+8), as ms.
    fn at(h: u32, m: u32) -> u64 {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        local_ms(&tz, day, h * 60 + m).unwrap()
    }

    #[test]
    fn open_within_the_range_closed_outside_with_the_next_opening() {
        let h = hours(&[("pre_sale", "09:00-24:00")], &[]);
        assert_eq!(h.open("pre_sale", at(9, 0)), Open::Now);
        assert_eq!(h.open("pre_sale", at(23, 59)), Open::Now);
        assert_eq!(
            h.open("pre_sale", at(3, 0)),
            Open::Closed {
                next_open_ms: Some(at(9, 0))
            }
        );
        assert_eq!(
            h.open("after_sale", at(3, 0)),
            Open::Now,
            "no line: always open"
        );
    }

    #[test]
    fn holidays_and_ranges_across_midnight() {
        let h = hours(&[("night", "22:00-06:00")], &["2026-12-02"]);
        // The small hours of the 2nd belong to the 1st's shift (not a holiday).
        assert_eq!(h.open("night", at(2, 0)), Open::Now);
        // The evening of the 2nd is a holiday; next opening the 3rd at 22:00.
        assert_eq!(
            h.open("night", at(23, 0)),
            Open::Closed {
                next_open_ms: Some(at(22, 0) + 86_400_000)
            }
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut h = HoursSettings {
            groups: [("pre_sale".to_string(), "9-5".to_string())].into(),
            ..HoursSettings::default()
        };
        assert!(h.compile().unwrap_err().contains("pre_sale"));
        let mut h = HoursSettings {
            zone: Some("Mars/Olympus".into()),
            ..HoursSettings::default()
        };
        assert!(h.compile().unwrap_err().contains("Mars"));
    }
}
