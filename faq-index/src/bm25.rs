//! BM25 re-scoring of candidate documents, with parameters tantivy does not expose.
//!
//! tantivy fixes k1 = 1.2 and b = 0.75, tuned for long documents. FAQ questions are a dozen terms
//! long: a question that is short because it says less is not a better match (lower `b`, less
//! length normalisation), and a repeated term is little more evidence (lower `k1`). Re-scoring
//! also brings in character unigrams, left out of the tantivy query for latency (long posting
//! lists) but useful on colloquial Chinese with typos and one-character variants (借/借款, 还/还款).
//! Scoring a few dozen candidates is a merge of two short sorted lists each: microseconds.
//! tantivy still does the retrieval.
//!
//! BM25 only counts the terms both texts have. [`Bm25::disagreement`] counts the others, as the
//! binary independence model does: a term one text has and the other lacks is evidence against
//! a match in proportion to how common the term is (`-ln(1 - df/N)`). A rare term missing says
//! little; a common one (the product or topic a question is about: 花呗 vs 借呗) says a lot,
//! while its IDF is too low for BM25 to tell the two topics apart.

/// Weight of each field: words, bigrams, unigrams, trigrams (tuned on the dev sets).
const FIELD_BOOSTS: [f32; 4] = [1.0, 0.6, 0.8, 0.3];
/// Term-frequency saturation.
const K1: f32 = 0.5;
/// Length normalisation.
const B: f32 = 0.5;

/// Document frequency above which a term's absence weighs no more (caps `-ln(1 - df/N)`).
const MAX_DF: f32 = 0.9;

/// A document's terms: (term id, field, count), sorted by term id and deduplicated.
pub(crate) type Counts = Vec<(u32, u8, f32)>;

/// Per-document term counts and lengths, and the terms' IDF over documents.
pub(crate) struct Bm25 {
    docs: Vec<Counts>,
    lens: Vec<[f32; 4]>,
    avg: [f32; 4],
    idf: Vec<f32>,
    /// `-ln(1 - df/N)` per term, for [`Bm25::disagreement`].
    absent: Vec<f32>,
}

impl Bm25 {
    /// Builds the statistics over `docs`, whose term ids are below `vocab_len`.
    pub fn build(docs: Vec<Counts>, vocab_len: usize) -> Self {
        let mut df = vec![0u32; vocab_len];
        let mut lens = Vec::with_capacity(docs.len());
        let mut total = [0f32; 4];
        for doc in &docs {
            let mut len = [0f32; 4];
            for &(id, f, c) in doc {
                df[id as usize] += 1;
                len[f as usize] += c;
            }
            for (t, l) in total.iter_mut().zip(len) {
                *t += l;
            }
            lens.push(len);
        }
        let n = docs.len().max(1) as f32;
        let avg = total.map(|t| (t / n).max(1.0));
        let idf = df
            .iter()
            .map(|&d| (1.0 + (n - d as f32 + 0.5) / (d as f32 + 0.5)).ln())
            .collect();
        let absent = df
            .iter()
            .map(|&d| -(1.0 - (d as f32 / n).min(MAX_DF)).ln())
            .collect();
        Self {
            docs,
            lens,
            avg,
            idf,
            absent,
        }
    }

    /// The BM25 score of document `doc` for the query's terms (each counted once, as tantivy's
    /// boolean query does).
    pub fn score(&self, query: &Counts, doc: usize) -> f32 {
        let d = &self.docs[doc];
        let len = &self.lens[doc];
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        while i < query.len() && j < d.len() {
            match query[i].0.cmp(&d[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    let (id, f, tf) = d[j];
                    let f = f as usize;
                    let norm = K1 * (1.0 - B + B * len[f] / self.avg[f]);
                    sum += FIELD_BOOSTS[f] * self.idf[id as usize] * tf * (K1 + 1.0) / (tf + norm);
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }
}

impl Bm25 {
    /// The summed absence weight of the terms of `field` that only one of the query and the
    /// document has.
    pub fn disagreement(&self, query: &Counts, doc: usize, field: u8) -> f32 {
        let d = &self.docs[doc];
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        loop {
            let q = query.get(i).map(|t| (t.0, t.1));
            let e = d.get(j).map(|t| (t.0, t.1));
            let one_side = match (q, e) {
                (None, None) => break,
                (Some(q), Some(e)) if q.0 == e.0 => {
                    i += 1;
                    j += 1;
                    continue;
                }
                (Some(q), Some(e)) if q.0 < e.0 => {
                    i += 1;
                    q
                }
                (Some(q), None) => {
                    i += 1;
                    q
                }
                (_, Some(e)) => {
                    j += 1;
                    e
                }
            };
            if one_side.1 == field {
                sum += self.absent[one_side.0 as usize];
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarer_terms_and_shorter_documents_score_higher() {
        // Term 0 is in every document, term 1 in one.
        let docs = vec![
            vec![(0, 0, 1.0), (1, 0, 1.0)],
            vec![(0, 0, 1.0), (2, 0, 1.0)],
            vec![(0, 0, 1.0), (2, 0, 1.0), (3, 0, 1.0), (4, 0, 1.0)],
        ];
        let bm25 = Bm25::build(docs, 5);
        let common = vec![(0, 0, 1.0)];
        let rare = vec![(1, 0, 1.0)];
        assert!(bm25.score(&rare, 0) > bm25.score(&common, 0));
        assert!(bm25.score(&common, 1) > bm25.score(&common, 2));
        assert_eq!(bm25.score(&rare, 1), 0.0);
    }

    #[test]
    fn disagreement_weighs_common_terms_either_side_lacks() {
        // Term 0 is in 3 documents of 4, term 1 in one; field 1 is ignored.
        let docs = vec![
            vec![(0, 0, 1.0), (1, 0, 1.0)],
            vec![(0, 0, 1.0), (2, 1, 1.0)],
            vec![(0, 0, 1.0)],
            vec![(3, 0, 1.0)],
        ];
        let bm25 = Bm25::build(docs, 4);
        let query = vec![(0, 0, 1.0)];
        assert_eq!(bm25.disagreement(&query, 2, 0), 0.0);
        assert_eq!(bm25.disagreement(&query, 1, 0), 0.0);
        let missing_common = bm25.disagreement(&query, 3, 0);
        let extra_rare = bm25.disagreement(&query, 0, 0);
        assert!(missing_common > extra_rare && extra_rare > 0.0);
        assert!((extra_rare + 0.75f32.ln()).abs() < 1e-6, "{extra_rare}");
    }
}
