//! kefu-load: simulated customers and agents speaking the kefu gateway protocol, driven by a
//! traffic profile, measuring what customers and shops care about (greeting time, bot and agent
//! latency, queueing, lost and duplicated messages) and judging the run against the profile's SLOs.
//!
//! The binary (`kefu-load`) is a thin layer over [`run::run`], [`idle::idle`] and
//! [`spawn::Cluster`], so tests drive the same code. With `--spawn`, [`faults`] kills and
//! restarts nodes and Redis during the run, and every client fails over through [`balancer`].

use std::sync::atomic::{AtomicU64, Ordering};

pub mod agent;
mod aggregate;
pub mod balancer;
pub mod customer;
pub mod faults;
pub mod idle;
pub mod metrics;
pub mod nchan;
pub mod net;
pub mod profile;
pub mod relay;
pub mod report;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod spawn;
pub mod svg;
pub mod tally;

pub use run::{run, RunOptions};

static WARNINGS: AtomicU64 = AtomicU64::new(0);

/// Prints a warning on stderr, but only the first 20 and then every 1000th: with thousands of
/// sessions failing the same way, one line each would bury the progress output.
pub fn warn_limited(msg: &str) {
    let n = WARNINGS.fetch_add(1, Ordering::Relaxed);
    if n < 20 || n.is_multiple_of(1000) {
        eprintln!("kefu-load: warning #{}: {msg}", n + 1);
    }
}
