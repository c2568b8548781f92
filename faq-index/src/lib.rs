//! Knowledge-base search for the kefu gateway: finds the entry a customer question means, in
//! Chinese or English, with a confidence that says whether to answer, suggest, or hand off.
//!
//! ```no_run
//! use std::sync::Arc;
//! use faq_index::{Decision, Index, KnowledgeBase};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kb = KnowledgeBase::load(std::path::Path::new("config/kb"))?; // or a .jsonl file
//! let index = Arc::new(Index::build(&kb)?);                        // Send + Sync
//! let outcome = index.search("退貨運費誰出？", 5);                   // sync: use a blocking pool
//! match outcome.decision {
//!     Decision::Answer => println!("{}", index.entry(&outcome.matches[0].id).unwrap().answer),
//!     Decision::Suggest => { /* offer outcome.matches[..3] */ }
//!     Decision::Handoff => { /* route to the entry's (or a default) skill group */ }
//! }
//! # Ok(()) }
//! ```
//!
//! Public API:
//! - [`Entry`], [`KnowledgeBase`] (`load`, `from_entries`, `entries`, `get`), [`KbError`]: the
//!   KB, loaded from JSONL or the TOML authoring format (`[[entry]]` tables, `config/kb/*.toml`),
//!   with errors naming file, line and field.
//! - [`similar::cluster`]: groups texts that mean the same (the missed questions).
//! - [`Index`] (`build`, `build_with`, `search`, `entry`, `entries`), [`IndexError`]: built in RAM, immutable.
//! - [`Outcome`] (`decision`, `confidence`, `matches`), [`Match`] (`id`, `score`, `question`),
//!   [`Decision`] (serde lowercase), [`Thresholds`] (serde, defaults tuned on the dev sets).
//!
//! How it matches: see `analysis` (normalisation, jieba words, character n-grams, stemming,
//! synonyms), `index` (tantivy BM25 over the analyzer's terms for candidates, re-scored by `bm25`
//! with short-document parameters and term disagreement, per-entry aggregation, TF-IDF and
//! homophone-tolerant character-sequence (`sequence`) re-ranking) and `confidence` (similarity
//! and margin over the runner-up).

mod analysis;
mod bm25;
mod confidence;
mod index;
mod kb;
mod sequence;
pub mod similar;
mod vectors;

pub use confidence::{Decision, Thresholds};
pub use index::{Index, IndexError, Match, Outcome};
pub use kb::{validate_entry, Entry, KbError, KnowledgeBase, Location, CATEGORIES, NEEDS};
