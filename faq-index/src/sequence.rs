//! Character-sequence similarity: what a bag of terms cannot see.
//!
//! Near-miss questions often share every term and differ in order ("A 换成 B" vs "B 换成 A") or
//! in a short insertion. The longest common subsequence of the two character strings, relative
//! to their lengths, rewards the candidate that says the same things in the same order.

/// Characters compared, at most (longer texts are cut: the opening says what a question is about).
const MAX_CHARS: usize = 64;

/// The characters of a normalised text that take part in the comparison.
pub(crate) fn chars(norm: &str) -> Vec<char> {
    norm.chars()
        .filter(|c| !c.is_whitespace())
        .take(MAX_CHARS)
        .collect()
}

/// Longest common subsequence length over the Dice denominator, in `[0, 1]`.
pub(crate) fn similarity(a: &[char], b: &[char]) -> f32 {
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
        let q = chars("能把网商贷换成借呗");
        assert_eq!(similarity(&q, &q), 1.0);
        let same_order = chars("网商贷能换成借呗吗");
        let swapped = chars("能把借呗换成网商贷");
        assert!(similarity(&q, &same_order) > similarity(&q, &swapped));
        assert_eq!(similarity(&q, &[]), 0.0);
    }
}
