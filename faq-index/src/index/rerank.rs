//! Re-ranking one candidate entry: a fusion of its relative BM25, cosines, character sequence
//! and disagreement, weighted by how many paraphrases the entry has.

use super::Index;
use crate::bm25::Counts;
use crate::sequence;
use crate::vectors::{dot, SparseVec};

/// Fusion weights: closest paraphrase cosine, centroid cosine, relative BM25.
const W_MAX: f32 = 0.45;
const W_CENTROID: f32 = 0.35;
const W_BM25: f32 = 0.2;
/// Fusion weights for an entry with a single question: cosine, relative BM25. With the re-scored
/// BM25 (short-document k1/b, unigrams), any cosine weight lowered accuracy on near-miss
/// single-question KBs, so such entries rank by BM25 alone.
const SINGLE_W_COS: f32 = 0.0;
const SINGLE_W_BM25: f32 = 0.85;

/// Weight of the sound-sequence similarity ([`crate::sequence`]) for an entry with a single
/// question (scaled down like the other single-question weights as paraphrases add up).
const W_SEQUENCE: f32 = 0.7;
/// Weight of [`crate::bm25::Bm25::disagreement`] over character unigrams for an entry with a single question
/// (scaled like [`W_SEQUENCE`]). Characters, not words: jieba may segment a typo differently.
const W_DISAGREE: f32 = 0.2;
/// The unigram field of [`crate::bm25`] counts.
const UNIGRAM_FIELD: u8 = 2;
/// Subtracted from the fused score when the query and the entry's closest question disagree on
/// negation ("花呗能用" vs "花呗不能用"): a near-miss that shares every other word.
const NEGATION_PENALTY: f32 = 0.05;

impl Index {
    pub(super) fn score_entry(&self, entry: u32, bm25: f32, query: &QueryView) -> Scored {
        let docs = self.entry_docs[entry as usize].clone();
        let mut closest = (0.0f32, 0usize);
        let mut closest_doc = docs.start;
        let mut q_index = 0usize;
        for (d, doc) in docs.clone().zip(&self.docs[docs.clone()]) {
            if doc.keywords {
                continue;
            }
            let cos = dot(query.vector, &doc.vector);
            if cos > closest.0 {
                closest = (cos, q_index);
                closest_doc = d;
            }
            q_index += 1;
        }
        let doc = &self.docs[closest_doc];
        let neg_mismatch = closest.0 > 0.0 && doc.negated != query.negated;
        let cent = dot(query.vector, &self.centroids[entry as usize]);
        let (w_max, w_cent, w_bm) = (W_MAX, W_CENTROID, W_BM25);
        // How much the entry's paraphrases say about it as a whole: nothing for one question
        // (rank by BM25, which handles near-miss single questions best), much for ten.
        let k = docs.len() as f32;
        let alpha = (k - 1.0) / (k + 1.0);
        let similarity = (w_max * closest.0 + w_cent * cent) / (w_max + w_cent);
        let single = SINGLE_W_COS * closest.0
            + SINGLE_W_BM25 * bm25
            + W_SEQUENCE * sequence::similarity(query.sounds, &doc.sounds)
            - W_DISAGREE
                * self
                    .bm25
                    .disagreement(query.counts, closest_doc, UNIGRAM_FIELD);
        Scored {
            entry,
            question: closest.1,
            similarity,
            fused: alpha * (w_max * closest.0 + w_cent * cent + w_bm * bm25)
                + (1.0 - alpha) * single
                - if neg_mismatch { NEGATION_PENALTY } else { 0.0 },
        }
    }
}

/// The query as [`Index::score_entry`] compares it.
pub(super) struct QueryView<'a> {
    pub vector: &'a SparseVec,
    pub counts: &'a Counts,
    pub negated: bool,
    pub sounds: &'a [u32],
}

pub(super) struct Scored {
    pub entry: u32,
    /// The closest paraphrase, by index among the entry's questions.
    pub question: usize,
    /// Cosine similarity (closest paraphrase and centroid), for the confidence.
    pub similarity: f32,
    /// The ranking score.
    pub fused: f32,
}
