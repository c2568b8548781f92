//! The arrival schedule: when each new customer session starts.
//!
//! The rate is piecewise linear (one segment per `[[phase]]`). Arrivals are placed
//! deterministically where the cumulative expected count crosses `k + 0.5`, so a run is
//! reproducible, the count per phase is exact, and workers can split the arrivals by index
//! (`k % workers`) without coordinating.

use std::time::Duration;

use crate::profile::Phase;

#[derive(Debug, Clone)]
pub struct Schedule {
    phases: Vec<Phase>,
}

impl Schedule {
    pub fn new(phases: &[Phase]) -> Schedule {
        Schedule {
            phases: phases.to_vec(),
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|p| p.duration_s).sum())
    }

    /// The expected number of arrivals over the whole schedule (the area under the rate).
    pub fn expected_total(&self) -> f64 {
        self.phases
            .iter()
            .map(|p| (p.rate_start + p.rate_end) / 2.0 * p.duration_s)
            .sum()
    }

    /// New sessions per second at `t` seconds from the start (0 outside the schedule).
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for p in &self.phases {
            if t >= start && t < start + p.duration_s {
                let f = (t - start) / p.duration_s;
                return p.rate_start + (p.rate_end - p.rate_start) * f;
            }
            start += p.duration_s;
        }
        0.0
    }

    /// The highest rate anywhere in the schedule.
    pub fn peak_rate(&self) -> f64 {
        self.phases
            .iter()
            .map(|p| p.rate_start.max(p.rate_end))
            .fold(0.0, f64::max)
    }

    /// Arrival offsets from the start of the run, in order.
    pub fn arrivals(&self) -> Arrivals<'_> {
        Arrivals {
            phases: &self.phases,
            seg: 0,
            seg_start_t: 0.0,
            seg_start_n: 0.0,
            k: 0,
        }
    }
}

/// Iterator over arrival offsets; see [`Schedule::arrivals`].
pub struct Arrivals<'a> {
    phases: &'a [Phase],
    seg: usize,
    seg_start_t: f64,
    seg_start_n: f64,
    k: u64,
}

impl Iterator for Arrivals<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let target = self.k as f64 + 0.5;
        loop {
            let p = self.phases.get(self.seg)?;
            let area = (p.rate_start + p.rate_end) / 2.0 * p.duration_s;
            if target <= self.seg_start_n + area {
                // Solve n(τ) = r0·τ + (r1−r0)·τ²/(2D) = m for τ in the segment; the form
                // 2m / (b + √(b² + 4am)) is stable for flat, rising and falling segments.
                let m = target - self.seg_start_n;
                let a = (p.rate_end - p.rate_start) / (2.0 * p.duration_s);
                let b = p.rate_start;
                let disc = (b * b + 4.0 * a * m).max(0.0);
                let denom = b + disc.sqrt();
                let tau = if denom > 0.0 {
                    (2.0 * m / denom).min(p.duration_s)
                } else {
                    0.0
                };
                self.k += 1;
                return Some(Duration::from_secs_f64(self.seg_start_t + tau));
            }
            self.seg_start_t += p.duration_s;
            self.seg_start_n += area;
            self.seg += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph(d: f64, a: f64, b: f64) -> Phase {
        Phase {
            duration_s: d,
            rate_start: a,
            rate_end: b,
        }
    }

    #[test]
    fn flat_rate_is_evenly_spaced() {
        let s = Schedule::new(&[ph(2.0, 10.0, 10.0)]);
        let t: Vec<f64> = s.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(t.len(), 20);
        assert!((t[0] - 0.05).abs() < 1e-9);
        assert!((t[1] - t[0] - 0.1).abs() < 1e-9);
        assert!((t[19] - 1.95).abs() < 1e-9);
    }

    #[test]
    fn ramp_counts_match_area_and_are_ordered() {
        let s = Schedule::new(&[
            ph(10.0, 0.0, 100.0),
            ph(5.0, 100.0, 100.0),
            ph(10.0, 100.0, 0.0),
        ]);
        let t: Vec<f64> = s.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(t.len() as f64, s.expected_total());
        assert_eq!(t.len(), 500 + 500 + 500);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        // A rising ramp puts few arrivals early: in the first second 0..10/s -> 5 arrivals.
        assert_eq!(t.iter().filter(|&&x| x < 1.0).count(), 5);
        // The falling ramp mirrors it at the end.
        assert_eq!(t.iter().filter(|&&x| x >= 24.0).count(), 5);
        assert!(*t.last().unwrap() <= 25.0);
    }

    #[test]
    fn spike_profile_rate_lookup() {
        let s = Schedule::new(&[
            ph(60.0, 50.0, 50.0),
            ph(10.0, 50.0, 1000.0),
            ph(60.0, 1000.0, 100.0),
        ]);
        assert_eq!(s.rate_at(30.0), 50.0);
        assert!((s.rate_at(65.0) - 525.0).abs() < 1e-9);
        assert_eq!(s.rate_at(500.0), 0.0);
        assert_eq!(s.peak_rate(), 1000.0);
        assert_eq!(s.duration(), Duration::from_secs(130));
    }

    #[test]
    fn zero_rate_phase_is_skipped() {
        let s = Schedule::new(&[ph(5.0, 0.0, 0.0), ph(1.0, 4.0, 4.0)]);
        let t: Vec<f64> = s.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(t.len(), 4);
        assert!(t.iter().all(|&x| (5.0..6.0).contains(&x)));
    }

    #[test]
    fn workers_split_by_index_cover_every_arrival_once() {
        let s = Schedule::new(&[ph(3.0, 7.0, 13.0)]);
        let all: Vec<Duration> = s.arrivals().collect();
        let mut merged: Vec<Duration> = (0..3)
            .flat_map(|w| {
                s.arrivals()
                    .enumerate()
                    .filter(move |(k, _)| k % 3 == w)
                    .map(|(_, d)| d)
            })
            .collect();
        merged.sort();
        assert_eq!(merged, all);
    }
}
