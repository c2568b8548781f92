//! The masking toward agents and logs (`gateway::mask`): masking masked text changes nothing,
//! the text never grows beyond a small factor, and no mainland mobile number is left in the
//! output as the masker reads numbers: after its normalisation (NFKC, format characters
//! dropped), digit groups joined by at most `MAX_GAP` separator characters, any consecutive
//! groups of such a run spelling `1[3-9]` and nine more digits (or `86` before that).
#![no_main]

use gateway::mask::fuzzing::{is_separator, MAX_GAP};
use gateway::mask::{mask_text, normalise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let masked = mask_text(text);
    assert!(
        masked.len() <= 2 * text.len() + 16,
        "grew from {} to {} bytes",
        text.len(),
        masked.len()
    );
    let again = mask_text(&masked);
    assert!(
        again == masked,
        "not idempotent: {text:?} -> {masked:?} -> {again:?}"
    );
    let normal = normalise(&masked);
    if let Some(phone) = phone_in(&normal) {
        panic!("{phone} left in {text:?} -> {masked:?}");
    }
    // The leak rules match on `normalise` too: it must be a fixed point of itself.
    let n = normalise(text);
    assert!(
        normalise(&n) == n,
        "normalise is not idempotent on {text:?}"
    );
});

/// The first mobile number spelled by consecutive digit groups of one run of `normal`.
fn phone_in(normal: &str) -> Option<String> {
    let mut runs: Vec<Vec<String>> = Vec::new();
    let mut in_group = false;
    let mut gap: Option<usize> = None;
    for c in normal.chars() {
        if c.is_ascii_digit() {
            if !in_group {
                match (gap, runs.last_mut()) {
                    (Some(n), Some(run)) if n <= MAX_GAP => run.push(String::new()),
                    _ => runs.push(vec![String::new()]),
                }
                in_group = true;
            }
            if let Some(g) = runs.last_mut().and_then(|r| r.last_mut()) {
                g.push(c);
            }
            gap = Some(0);
            continue;
        }
        in_group = false;
        gap = if is_separator(c) {
            gap.map(|n| n + 1)
        } else {
            None
        };
    }
    let phone = |d: &str| {
        let b = d.as_bytes();
        b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
    };
    for run in &runs {
        for i in 0..run.len() {
            let mut joined = String::new();
            for g in &run[i..] {
                joined.push_str(g);
                if joined.len() > 13 {
                    break;
                }
                if phone(&joined) || joined.strip_prefix("86").is_some_and(phone) {
                    return Some(joined);
                }
            }
        }
    }
    None
}
