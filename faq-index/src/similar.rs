//! Grouping texts that mean the same thing, with the index's own analysis: the same
//! normalisation, jieba words, character n-grams, stemming and synonyms as the search, and
//! TF-IDF cosines like the re-ranker's.
//!
//! Used for the questions the bot missed: an editor wants "cancel my order, 9 wordings" rather
//! than nine lines. The document frequencies come from the texts being grouped (each text one
//! document), not from the knowledge base: misses are about what the KB does not know, so its
//! vocabulary would give their distinctive words no weight at all.

use std::collections::HashMap;

use crate::analysis::{analyze, Terms};
use crate::vectors::{centroid, dot, SparseVec};

/// Cosine (in `[0, 1]`) between a text and a group's centroid at or above which the text
/// joins the group. Tuned on hand-made wordings of everyday shop questions (see the tests).
pub const DEFAULT_THRESHOLD: f32 = 0.3;

/// Weights of the analysis terms: the synonym groups' canonical terms (`~cancel`, shared by
/// 取消, 撤销, cancel…) say most about what a question means; words next; character bigrams
/// catch what jieba splits differently; single characters are too common to help.
fn weighted(terms: &Terms) -> impl Iterator<Item = (String, f32)> + '_ {
    let words = terms.words.iter().map(|w| {
        let weight = if w.starts_with('~') { 2.0 } else { 1.0 };
        (format!("w{w}"), weight)
    });
    let bigrams = terms.bigrams.iter().map(|b| (format!("b{b}"), 0.5));
    let trigrams = terms.trigrams.iter().map(|t| (format!("t{t}"), 0.3));
    words.chain(bigrams).chain(trigrams)
}

/// Assigns each text a group number (0, 1, … in order of first appearance): greedy, in the
/// given order, each text joins the most similar existing group whose centroid it reaches
/// `threshold` with, or starts a new one. O(texts × groups): callers bound the input. Texts
/// of different languages rarely share terms; callers group per language.
pub fn cluster(texts: &[&str], threshold: f32) -> Vec<usize> {
    let analysed: Vec<Vec<(String, f32)>> = texts
        .iter()
        .map(|t| weighted(&analyze(t)).collect())
        .collect();
    // Document frequencies over the texts themselves; a smoothed IDF (at least 1), so that in
    // a small set of rewordings of one question their shared words still count.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut df: Vec<u32> = Vec::new();
    for terms in &analysed {
        let mut seen: Vec<u32> = terms
            .iter()
            .map(|(t, _)| {
                let next = ids.len() as u32;
                *ids.entry(t.as_str()).or_insert(next)
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for id in seen {
            if id as usize >= df.len() {
                df.resize(id as usize + 1, 0);
            }
            df[id as usize] += 1;
        }
    }
    let n = texts.len() as f32;
    let vectors: Vec<SparseVec> = analysed
        .iter()
        .map(|terms| {
            let mut sum: HashMap<u32, f32> = HashMap::new();
            for (t, w) in terms {
                if let Some(&id) = ids.get(t.as_str()) {
                    let idf = 1.0 + ((n + 1.0) / (df[id as usize] as f32 + 1.0)).ln();
                    *sum.entry(id).or_insert(0.0) += w * idf;
                }
            }
            let v: SparseVec = sum.into_iter().collect();
            // Normalised and sorted by id, as `dot` and `centroid` expect.
            centroid(std::iter::once(&v))
        })
        .collect();
    let mut groups: Vec<(Vec<usize>, SparseVec)> = Vec::new();
    let mut out = Vec::with_capacity(texts.len());
    for (i, v) in vectors.iter().enumerate() {
        let best = groups
            .iter()
            .enumerate()
            .map(|(g, (_, c))| (g, dot(v, c)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((g, score)) if score >= threshold && !v.is_empty() => {
                groups[g].0.push(i);
                let members = groups[g].0.iter().map(|&m| &vectors[m]);
                groups[g].1 = centroid(members);
                out.push(g);
            }
            _ => {
                out.push(groups.len());
                groups.push((vec![i], v.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordings_of_one_question_group_and_unrelated_ones_do_not() {
        let texts = [
            "我想取消订单",
            "订单怎么取消啊",
            "how do I cancel my order",
            "刚下的单不想要了能取消吗",
            "退款怎么还没到账",
            "cancel my order please",
            "退款到现在还没收到",
            "你们发顺丰吗",
            "訂單怎麼取消",
            "how many prime numbers are below 100",
        ];
        let groups = cluster(&texts, DEFAULT_THRESHOLD);
        let cancel_zh = groups[0];
        assert_eq!(groups[1], cancel_zh, "{groups:?}");
        assert_eq!(groups[3], cancel_zh, "{groups:?}");
        assert_eq!(groups[8], cancel_zh, "traditional characters: {groups:?}");
        assert_eq!(groups[5], groups[2], "{groups:?}");
        assert_eq!(groups[6], groups[4], "{groups:?}");
        assert_ne!(groups[4], cancel_zh, "{groups:?}");
        assert_ne!(groups[7], cancel_zh, "{groups:?}");
        assert_ne!(groups[7], groups[4], "{groups:?}");
        assert_ne!(groups[9], groups[2], "{groups:?}");
    }

    #[test]
    fn empty_input_and_empty_texts() {
        assert!(cluster(&[], DEFAULT_THRESHOLD).is_empty());
        let groups = cluster(&["", "？？", "取消订单"], DEFAULT_THRESHOLD);
        assert_eq!(groups.len(), 3);
        assert_ne!(groups[0], groups[1], "texts without terms stay apart");
    }
}
