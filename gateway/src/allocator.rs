//! How the global allocator (mimalloc, set in `main.rs`) hands freed memory back to the
//! kernel.
//!
//! mimalloc gives back pages that stayed free for a second (its purge). By default it does so
//! with `MADV_DONTNEED`: the pages leave the process at once, and the next allocation there
//! takes a page fault and a zeroed page, and splits the transparent huge page it was part of.
//! A node at a sale-day peak frees and reuses memory all the time (sessions end while others
//! begin), so it kept paying for faults and page clearing (`clear_page_erms` was ~4% of the
//! nodes' time in a profile). With `MADV_FREE` (mimalloc's "reset") the pages stay mapped and
//! are reused without a fault; the kernel takes them only when memory runs short. The cost is
//! that the resident size falls only under memory pressure after a peak, as with glibc's
//! malloc. Measured side by side (README, "What the sale day taught us"): the sale-day tail
//! went down with it.
//!
//! `MIMALLOC_PURGE_DECOMMITS` in the environment still decides when it is set.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_purge_decommits` in mimalloc's `mi_option_t` (`mimalloc.h`; the Rust bindings
/// name only some options). The test below checks the index against its default.
const PURGE_DECOMMITS: mi_option_t = 5;

/// The environment variable mimalloc reads for the same option.
const ENV: &str = "MIMALLOC_PURGE_DECOMMITS";

/// Makes mimalloc purge with `MADV_FREE` rather than `MADV_DONTNEED`, unless the operator set
/// [`ENV`]. Call once, first thing in `main`.
#[allow(unsafe_code)]
pub fn tune() {
    if std::env::var_os(ENV).is_some() {
        return;
    }
    // SAFETY: sets an integer in mimalloc's static option table (the function checks the
    // index); the option is read at each purge, so it takes effect from the next one. No
    // pointers and no memory-safety preconditions.
    unsafe { mi_option_set(PURGE_DECOMMITS, 0) };
}

/// Whether mimalloc purges by decommitting (`MADV_DONTNEED`); for the test.
#[cfg(test)]
#[allow(unsafe_code)]
fn purges_by_decommit() -> bool {
    // SAFETY: reads an integer from mimalloc's static option table.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DECOMMITS) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_switches_purging_to_reset() {
        // The option at our index starts as mimalloc documents `purge_decommits` (=1), so the
        // index names that option in the linked mimalloc.
        if std::env::var_os(ENV).is_none() {
            assert!(
                purges_by_decommit(),
                "index 5 is not purge_decommits (default 1)"
            );
        }
        tune();
        if std::env::var_os(ENV).is_none() {
            assert!(!purges_by_decommit());
        }
    }
}
