//! The search index: tantivy BM25 for candidates, a TF-IDF re-ranker per entry, a confidence.
//!
//! Every paraphrase (and the keyword list) of an entry is one tantivy document with four fields
//! (see [`crate::analysis::Terms`]), tokenised by us and stored space-separated, so tantivy's
//! whitespace tokenizer gives back exactly our terms. Queries are a `BooleanQuery` of `Should`
//! term queries over the analyzer's terms (never a phrase), boosted per field. BM25 scores are
//! aggregated per entry (best paraphrase), and the top candidates are re-ranked by a fusion of
//! BM25 (relative to the best candidate) with two cosines: to the closest paraphrase and to the
//! entry's centroid (all its paraphrases together, which is what an entry with many paraphrases
//! "means"). The BM25 of the candidates is recomputed by [`crate::bm25`] (parameters for short
//! questions, unigrams included); entries with a single question, whose near-misses share most
//! terms, also weigh in the character order ([`crate::sequence`]), the common characters only one
//! side has ([`Bm25::disagreement`]) and a negation mismatch (see `rerank`).

use std::collections::HashMap;

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::WhitespaceTokenizer;
use tantivy::{DocAddress, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::analysis::{analyze, Terms};
use crate::bm25::Bm25;
use crate::confidence::{confidence, Decision, Thresholds};
use crate::kb::{Entry, KnowledgeBase};
use crate::vectors::{centroid, SparseVec, Vocab};
use rerank::{QueryView, Scored};

/// BM25 boost of each field: words, bigrams, unigrams, trigrams. Unigrams are left out of the
/// BM25 query (0: skipped): their long posting lists cost more than half the query time for a
/// gain within noise; they still count in the re-ranking cosine.
const FIELD_BOOSTS: [f32; 4] = [1.0, 0.6, 0.0, 0.3];
/// Paraphrase documents fetched from tantivy.
const RETRIEVE: usize = 80;
/// Entries re-scored by [`crate::bm25`] and re-ranked.
const CANDIDATES: usize = 30;
/// Why an index could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed (out of memory, internal error).
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

/// One entry found for a question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The entry's id.
    pub id: String,
    /// Relevance in `[0, 1]`, comparable within one search (the first match has the highest).
    pub score: f32,
    /// The entry's paraphrase closest to the question (what a suggestion shows).
    pub question: String,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// What to do, from [`Outcome::confidence`] and the index's [`Thresholds`].
    pub decision: Decision,
    /// Confidence in `[0, 1]` that the first match is what the customer means; comparable
    /// across questions.
    pub confidence: f32,
    /// Best entries first, at most the `limit` asked for.
    pub matches: Vec<Match>,
}

struct Doc {
    entry: u32,
    vector: SparseVec,
    /// Keyword documents help retrieval and the centroid but are not a "closest question".
    keywords: bool,
    /// Whether the question is negated (see [`Terms::negated`]).
    negated: bool,
    /// The question's character sounds, for [`crate::sequence`].
    sounds: Vec<u32>,
}

/// An in-memory index over a [`KnowledgeBase`]. Immutable, `Send + Sync`: share it in an `Arc`
/// and rebuild a new one to change the KB.
pub struct Index {
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    fields: [Field; 4],
    searcher: Searcher,
    /// Keeps the segments alive for `searcher`.
    _reader: IndexReader,
    /// tantivy (segment ordinal, doc id) → our document.
    doc_map: Vec<Vec<u32>>,
    docs: Vec<Doc>,
    /// The documents of each entry (contiguous: they are added entry by entry).
    entry_docs: Vec<std::ops::Range<usize>>,
    centroids: Vec<SparseVec>,
    vocab: Vocab,
    /// Re-scores the candidates tantivy retrieves.
    bm25: Bm25,
    thresholds: Thresholds,
}

const FIELD_NAMES: [&str; 4] = ["word", "bigram", "unigram", "trigram"];

fn field_terms(terms: &Terms) -> [&Vec<String>; 4] {
    [
        &terms.words,
        &terms.bigrams,
        &terms.unigrams,
        &terms.trigrams,
    ]
}

impl Index {
    /// Builds the index with the default [`Thresholds`].
    pub fn build(kb: &KnowledgeBase) -> Result<Self, IndexError> {
        Self::build_with(kb, Thresholds::default())
    }

    /// Builds the index with the given thresholds.
    pub fn build_with(kb: &KnowledgeBase, thresholds: Thresholds) -> Result<Self, IndexError> {
        let mut builder = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("kefu_terms")
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = FIELD_NAMES.map(|name| builder.add_text_field(name, text.clone()));
        let pid = builder.add_u64_field("pid", NumericOptions::default().set_fast());
        let index = tantivy::Index::create_in_ram(builder.build());
        index
            .tokenizers()
            .register("kefu_terms", WhitespaceTokenizer::default());

        // Analyse every paraphrase once: the same terms feed tantivy and the vectors.
        let mut analysed: Vec<(u32, Terms, bool)> = Vec::new();
        for (e, entry) in kb.entries().iter().enumerate() {
            for q in &entry.questions {
                analysed.push((e as u32, analyze(q), false));
            }
            if !entry.keywords.is_empty() {
                analysed.push((e as u32, analyze(&entry.keywords.join(" ")), true));
            }
        }
        let mut per_entry: Vec<Vec<&Terms>> = vec![Vec::new(); kb.len()];
        for (e, terms, _) in &analysed {
            per_entry[*e as usize].push(terms);
        }
        let vocab = Vocab::build(per_entry.into_iter());

        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 50_000_000)?;
        let mut docs = Vec::with_capacity(analysed.len());
        let mut doc_counts = Vec::with_capacity(analysed.len());
        for (i, (entry, terms, keywords)) in analysed.iter().enumerate() {
            let mut doc = TantivyDocument::default();
            for (field, list) in fields.iter().zip(field_terms(terms)) {
                doc.add_text(*field, list.join(" "));
            }
            doc.add_u64(pid, i as u64);
            writer.add_document(doc)?;
            let (counts, vector) = vocab.lookup(terms, false);
            doc_counts.push(counts);
            docs.push(Doc {
                entry: *entry,
                vector,
                keywords: *keywords,
                negated: terms.negated,
                sounds: terms.sounds.clone(),
            });
        }
        writer.commit()?;
        let bm25 = Bm25::build(doc_counts, vocab.len());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let mut doc_map = Vec::new();
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().u64("pid")?;
            doc_map.push(
                (0..segment.max_doc())
                    .map(|d| column.first(d).unwrap_or(0) as u32)
                    .collect(),
            );
        }
        let mut members: Vec<Vec<&SparseVec>> = vec![Vec::new(); kb.len()];
        let mut entry_docs = vec![0..0; kb.len()];
        for (i, doc) in docs.iter().enumerate() {
            members[doc.entry as usize].push(&doc.vector);
            let range = &mut entry_docs[doc.entry as usize];
            if range.start == range.end {
                *range = i..i + 1;
            } else {
                range.end = i + 1;
            }
        }
        let centroids = members
            .into_iter()
            .map(|m| centroid(m.into_iter()))
            .collect();
        let entries = kb.entries().to_vec();
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Ok(Self {
            entries,
            by_id,
            fields,
            searcher,
            _reader: reader,
            doc_map,
            docs,
            entry_docs,
            centroids,
            vocab,
            bm25,
            thresholds,
        })
    }

    /// The entry with this id.
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// Every entry, in the order the index was built from (for exports of the merged KB).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The thresholds decisions are made with.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Finds the entries `question` means, best first (at most `limit`), and decides.
    ///
    /// Synchronous and CPU-bound (well under a millisecond on a few thousand entries): call it
    /// from a blocking pool (`tokio::task::spawn_blocking`), never directly on an async runtime.
    pub fn search(&self, question: &str, limit: usize) -> Outcome {
        let handoff = Outcome {
            decision: Decision::Handoff,
            confidence: 0.0,
            matches: Vec::new(),
        };
        let terms = analyze(question);
        if terms.is_empty() {
            return handoff;
        }
        let Some(hits) = self.bm25(&terms) else {
            return handoff;
        };
        // Best BM25 per entry, and the entries' best paraphrases.
        let mut best: HashMap<u32, f32> = HashMap::new();
        for (score, address) in hits {
            let Some(&doc) = self
                .doc_map
                .get(address.segment_ord as usize)
                .and_then(|m| m.get(address.doc_id as usize))
            else {
                continue;
            };
            let entry = self.docs[doc as usize].entry;
            let slot = best.entry(entry).or_insert(0.0);
            *slot = slot.max(score);
        }
        let mut candidates: Vec<(u32, f32)> = best.into_iter().collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        candidates.truncate(CANDIDATES.max(limit));
        // Re-score with our own BM25 (short-document k1/b, unigrams included).
        let (counts, query) = self.vocab.lookup(&terms, true);
        for c in candidates.iter_mut() {
            c.1 = self.entry_docs[c.0 as usize]
                .clone()
                .map(|d| self.bm25.score(&counts, d))
                .fold(0.0, f32::max);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_bm25 = candidates.first().map_or(1.0, |c| c.1).max(f32::EPSILON);

        let view = QueryView {
            vector: &query,
            counts: &counts,
            negated: terms.negated,
            sounds: &terms.sounds,
        };
        let mut scored: Vec<Scored> = candidates
            .into_iter()
            .map(|(entry, bm25)| self.score_entry(entry, bm25 / top_bm25, &view))
            .collect();
        scored.sort_unstable_by(|a, b| b.fused.total_cmp(&a.fused).then(a.entry.cmp(&b.entry)));
        let top = scored.first().map_or(0.0, |s| s.similarity);
        let runner_up = scored.get(1).map_or(0.0, |s| s.similarity);
        let confidence = confidence(top, runner_up);
        let matches = scored
            .into_iter()
            .take(limit)
            .map(|s| Match {
                id: self.entries[s.entry as usize].id.clone(),
                score: s.fused,
                question: self.entries[s.entry as usize]
                    .questions
                    .get(s.question)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        Outcome {
            decision: self.thresholds.decide(confidence),
            confidence,
            matches,
        }
    }

    fn bm25(&self, terms: &Terms) -> Option<Vec<(f32, DocAddress)>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (i, (field, list)) in self.fields.iter().zip(field_terms(terms)).enumerate() {
            let boost = FIELD_BOOSTS[i];
            if boost <= 0.0 {
                continue;
            }
            let mut seen: Vec<&str> = Vec::with_capacity(list.len());
            for t in list {
                if seen.contains(&t.as_str()) {
                    continue;
                }
                seen.push(t);
                let q = TermQuery::new(
                    Term::from_field_text(*field, t),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
        }
        let query = BooleanQuery::new(clauses);
        self.searcher
            .search(&query, &TopDocs::with_limit(RETRIEVE).order_by_score())
            .ok()
    }
}

mod rerank;
#[cfg(test)]
mod tests;
