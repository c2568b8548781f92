//! Character-sequence similarity: what a bag of terms cannot see.
//!
//! Near-miss questions often share every term and differ in order ("A 换成 B" vs "B 换成 A") or
//! in a short insertion. The longest common subsequence of the two character strings, relative
//! to their lengths, rewards the candidate that says the same things in the same order.
//!
//! Characters are compared by sound: Chinese is typed phonetically, so a typo is often a
//! homophone (逾期/预期, 还清/还请, 借款/接款). Each Chinese character becomes its toneless pinyin
//! and every other character stays itself, so a homophone typo still counts as a match.

use pinyin::ToPinyin;

/// Characters compared, at most (longer texts are cut: the opening says what a question is about).
const MAX_CHARS: usize = 64;

/// The sound of a character: equal for characters with the same toneless pinyin (their most
/// common reading), else the character itself.
pub(crate) fn sound(c: char) -> u32 {
    match c.to_pinyin() {
        // FNV-1a of the syllable, above the Unicode range so it never equals a character.
        Some(p) => {
            let h = p.plain().bytes().fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
            0x8000_0000 | (h >> 1)
        }
        None => c as u32,
    }
}

/// The sounds of a normalised text's characters that take part in the comparison.
pub(crate) fn sounds(norm: &str) -> Vec<u32> {
    norm.chars()
        .filter(|c| !c.is_whitespace())
        .take(MAX_CHARS)
        .map(sound)
        .collect()
}

/// Longest common subsequence length over the Dice denominator, in `[0, 1]`.
pub(crate) fn similarity(a: &[u32], b: &[u32]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0u16; b.len() + 1];
    let mut cur = vec![0u16; b.len() + 1];
    for &ca in a {
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    2.0 * f32::from(prev[b.len()]) / (a.len() + b.len()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matters_and_identical_texts_score_one() {
        let q = sounds("能把网商贷换成借呗");
        assert_eq!(similarity(&q, &q), 1.0);
        let same_order = sounds("网商贷能换成借呗吗");
        let swapped = sounds("能把借呗换成网商贷");
        assert!(similarity(&q, &same_order) > similarity(&q, &swapped));
        assert_eq!(similarity(&q, &[]), 0.0);
    }

    #[test]
    fn homophone_typos_still_match() {
        assert_eq!(sound('逾'), sound('预'));
        assert_ne!(sound('逾'), sound('期'));
        assert_eq!(sound('a'), 'a' as u32);
        let q = sounds("花呗预期一天");
        assert_eq!(similarity(&q, &sounds("花呗逾期一天")), 1.0);
        assert!(similarity(&q, &sounds("花呗分期一天")) < 1.0);
    }
}
