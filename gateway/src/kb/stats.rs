//! Per-entry answer figures: counted in memory on the customer's path (a lock and an add),
//! written to the store once a second as per-day increments ([`crate::store::StatsRow`]), so
//! several nodes add up in the same rows and a customer message never waits on the database.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::StatsRow;
use crate::telemetry::metric;

/// Distinct (day, entry) pairs counted between two flushes; beyond it counts are dropped
/// (and counted), which only a flood of made-up entries could reach.
const MAX_KEYS: usize = 20_000;

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Answered,
    Suggested,
    Picked,
    Helpful(bool),
    /// A hand-off within 2 minutes after the entry's answer.
    HandoffAfter,
}

#[derive(Default)]
pub struct Tally {
    counts: Mutex<HashMap<(String, String), StatsRow>>,
}

/// The UTC day of `ms` as `YYYY-MM-DD`.
pub fn day_of(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0);
    let (y, m, d) = crate::records::dates::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Tally {
    pub fn count(&self, entry_id: &str, event: Event, at_ms: u64) {
        let day = day_of(at_ms);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = (day, entry_id.to_string());
        if !counts.contains_key(&key) && counts.len() >= MAX_KEYS {
            metrics::counter!(metric::KB_STATS_DROPPED_TOTAL).increment(1);
            return;
        }
        let row = counts
            .entry(key)
            .or_insert_with_key(|(day, entry)| StatsRow {
                day: day.clone(),
                entry_id: entry.clone(),
                ..StatsRow::default()
            });
        match event {
            Event::Answered => row.answered += 1,
            Event::Suggested => row.suggested += 1,
            Event::Picked => row.picked += 1,
            Event::Helpful(true) => row.helpful_yes += 1,
            Event::Helpful(false) => row.helpful_no += 1,
            Event::HandoffAfter => row.handoffs_after += 1,
        }
    }

    /// Everything counted since the last call.
    pub fn take(&self) -> Vec<StatsRow> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *counts).into_values().collect()
    }

    /// Puts increments back after a failed write (they are added to what came since).
    pub fn restore(&self, rows: Vec<StatsRow>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows {
            let key = (r.day.clone(), r.entry_id.clone());
            if !counts.contains_key(&key) && counts.len() >= MAX_KEYS {
                metrics::counter!(metric::KB_STATS_DROPPED_TOTAL).increment(1);
                continue;
            }
            let row = counts.entry(key).or_insert_with(|| StatsRow {
                day: r.day.clone(),
                entry_id: r.entry_id.clone(),
                ..StatsRow::default()
            });
            row.answered += r.answered;
            row.suggested += r.suggested;
            row.picked += r.picked;
            row.helpful_yes += r.helpful_yes;
            row.helpful_no += r.helpful_no;
            row.handoffs_after += r.handoffs_after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_day_and_entry_and_restores_after_a_failed_write() {
        let tally = Tally::default();
        let day = 1_764_633_600_000; // 2025-12-02
        tally.count("a", Event::Answered, day);
        tally.count("a", Event::Answered, day + 1000);
        tally.count("a", Event::Helpful(false), day);
        tally.count("a", Event::Answered, day + 86_400_000);
        tally.count("b", Event::Picked, day);
        let mut rows = tally.take();
        rows.sort_by(|x, y| (&x.day, &x.entry_id).cmp(&(&y.day, &y.entry_id)));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].day, "2025-12-02");
        assert_eq!((rows[0].answered, rows[0].helpful_no), (2, 1));
        assert_eq!(rows[2].day, "2025-12-03");
        assert!(tally.take().is_empty());
        tally.restore(rows);
        tally.count("a", Event::Answered, day);
        let again: u64 = tally.take().iter().map(|r| r.answered).sum();
        assert_eq!(again, 4);
    }
}
