//! TF-IDF vectors over the analysis terms, for the re-ranker and the confidence.
//!
//! BM25 finds candidates well, but its scores are not comparable across queries. A cosine between
//! L2-normalised TF-IDF vectors is: it lies in `[0, 1]` whatever the query. Document frequency is
//! counted per *entry* (not per paraphrase), so a word every paraphrase of one entry shares is
//! rare, i.e. discriminative, instead of looking common.

use std::collections::HashMap;

use crate::analysis::Terms;
use crate::bm25::Counts;

/// Weight of each field of [`Terms`] in the vectors: words, bigrams, unigrams, trigrams.
const FIELD_WEIGHTS: [f32; 4] = [1.0, 0.7, 0.25, 0.35];

/// A sparse vector, sorted by term id, L2-normalised.
pub(crate) type SparseVec = Vec<(u32, f32)>;

/// Term ids and inverse document frequencies.
pub(crate) struct Vocab {
    ids: HashMap<String, u32>,
    idf: Vec<f32>,
    /// IDF given to query terms the KB has never seen: they make the query less similar to
    /// everything (what out-of-scope questions look like), but capped so one typo does not.
    unseen_idf: f32,
}

fn keyed(terms: &Terms) -> impl Iterator<Item = (usize, String)> + '_ {
    [
        &terms.words,
        &terms.bigrams,
        &terms.unigrams,
        &terms.trigrams,
    ]
    .into_iter()
    .enumerate()
    .flat_map(|(f, list)| list.iter().map(move |t| (f, format!("{f}\u{1}{t}"))))
}

impl Vocab {
    /// Builds the vocabulary from the terms of each entry (all its paraphrases together).
    pub fn build<'a>(entries: impl Iterator<Item = Vec<&'a Terms>>) -> Self {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        let mut n = 0usize;
        for texts in entries {
            n += 1;
            let mut seen: Vec<u32> = Vec::new();
            for terms in texts {
                for (_, key) in keyed(terms) {
                    let next = ids.len() as u32;
                    let id = *ids.entry(key).or_insert(next);
                    if id as usize == df.len() {
                        df.push(0);
                    }
                    seen.push(id);
                }
            }
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                df[id as usize] += 1;
            }
        }
        let n = n as f32;
        let idf = df
            .iter()
            .map(|&d| ((n + 1.0) / (d as f32 + 0.5)).ln().max(0.0))
            .collect();
        let unseen_idf = ((n + 1.0) / 1.5).ln().clamp(1.0, 4.0);
        Self {
            ids,
            idf,
            unseen_idf,
        }
    }

    /// The number of distinct terms.
    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// In one pass over the text's terms: the counts of its known terms (for [`crate::bm25`])
    /// and its normalised vector. With `count_unseen`, terms outside the vocabulary still add to
    /// the norm (queries); otherwise they are ignored (KB texts have none anyway).
    pub fn lookup(&self, terms: &Terms, count_unseen: bool) -> (Counts, SparseVec) {
        let mut counts: Counts = Vec::new();
        let mut unseen: HashMap<String, (usize, f32)> = HashMap::new();
        for (f, key) in keyed(terms) {
            match self.ids.get(&key) {
                Some(&id) => counts.push((id, f as u8, 1.0)),
                None if count_unseen => unseen.entry(key).or_insert((f, 0.0)).1 += 1.0,
                None => {}
            }
        }
        counts.sort_unstable_by_key(|&(id, _, _)| id);
        counts.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.2 += b.2;
            }
            same
        });
        let weight = |f: usize, count: f32, idf: f32| FIELD_WEIGHTS[f] * (1.0 + count.ln()) * idf;
        let mut v: SparseVec = counts
            .iter()
            .map(|&(id, f, c)| (id, weight(f as usize, c, self.idf[id as usize])))
            .collect();
        let unseen_sq: f32 = unseen
            .values()
            .map(|&(f, c)| weight(f, c, self.unseen_idf).powi(2))
            .sum();
        let norm = (v.iter().map(|&(_, w)| w * w).sum::<f32>() + unseen_sq).sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|(_, w)| *w /= norm);
        }
        (counts, v)
    }
}

/// Dot product of two sorted sparse vectors (their cosine when both are normalised).
pub(crate) fn dot(a: &[(u32, f32)], b: &[(u32, f32)]) -> f32 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

/// The normalised sum of normalised vectors: an entry's "average question".
pub(crate) fn centroid<'a>(vectors: impl Iterator<Item = &'a SparseVec>) -> SparseVec {
    let mut sum: HashMap<u32, f32> = HashMap::new();
    for v in vectors {
        for &(id, w) in v {
            *sum.entry(id).or_insert(0.0) += w;
        }
    }
    let mut v: SparseVec = sum.into_iter().collect();
    v.sort_unstable_by_key(|&(id, _)| id);
    let norm = v.iter().map(|&(_, w)| w * w).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|(_, w)| *w /= norm);
    }
    v
}
