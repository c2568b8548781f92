//! Knowledge-base entries and their loading.
//!
//! Two on-disk formats: JSONL (one entry per line, the interchange format of the data sets) and the
//! TOML authoring format of the bundled KB in `config/kb/*.toml` (`[[entry]]` tables). Both reject
//! unknown fields, and every error names the file, the line and, where it applies, the field, so a
//! KB author can fix a bad file without reading this code.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The categories the bundled KB may use; each maps to a skill group of human agents.
///
/// JSONL files (data sets, imports) may use other categories: only the TOML authoring format,
/// which is what the gateway routes on, is held to this list.
pub const CATEGORIES: &[&str] = &[
    "pre_sale",
    "logistics",
    "after_sale",
    "invoice",
    "payment",
    "promotion",
    "live_stream",
    "account",
    "human",
    "complaint",
];

/// One knowledge-base entry: a question asked in several ways and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unique id, referenced by the gateway protocol (`entry_id`).
    pub id: String,
    /// Skill group the conversation goes to when the bot hands off.
    pub category: String,
    /// The canonical question first, then paraphrases. Never empty.
    pub questions: Vec<String>,
    /// The answer the bot sends. Never empty.
    pub answer: String,
    /// `"zh"` or `"en"`.
    pub lang: String,
    /// Optional extra search terms (indexed like a short paraphrase).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Follow-up questions offered with the answer (the widget shows them as buttons that
    /// send the question).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<String>,
    /// Live data the answer is about, which the gateway fills in when it can: `"order_status"`
    /// (the customer's latest order, from the shop's order endpoint). Without it, or when the
    /// data cannot be had, the bot sends `answer` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
}

/// Values of [`Entry::needs`] the gateway knows how to fill.
pub const NEEDS: &[&str] = &["order_status"];

/// Where an entry came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File the entry was read from (`<memory>` for [`KnowledgeBase::from_entries`]).
    pub path: PathBuf,
    /// 1-based line of the entry (of its `[[entry]]` header in TOML).
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Why a knowledge base could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSONL/TOML or does not have the entry's shape.
    #[error("{at}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Syntax {
        /// File and line.
        at: Location,
        /// The offending field, when known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The entry parsed but breaks a rule (empty answer, unknown category...).
    #[error("{at}: entry `{id}`: field `{field}`: {message}")]
    Invalid {
        /// File and line.
        at: Location,
        /// The entry's id (may be empty when the id is what is wrong).
        id: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Two entries share an id.
    #[error("{second}: field `id`: duplicate id `{id}`, first defined at {first}")]
    DuplicateId {
        /// The id.
        id: String,
        /// Its first definition.
        first: Location,
        /// The duplicate.
        second: Location,
    },
    /// Neither a `.jsonl` nor a `.toml` file, nor a directory holding some.
    #[error("{}: not a knowledge base (expected a .jsonl or .toml file, or a directory of them)", path.display())]
    NotAKnowledgeBase {
        /// The path given.
        path: PathBuf,
    },
    /// The knowledge base has no entry at all.
    #[error("{}: the knowledge base has no entries", path.display())]
    Empty {
        /// The path given.
        path: PathBuf,
    },
}

/// A validated set of entries: unique ids, non-empty questions and answers.
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
}

impl KnowledgeBase {
    /// Loads a JSONL file, a TOML file, or a directory of `*.toml` and `*.jsonl` files (read in
    /// file-name order, so ids and error messages are deterministic).
    pub fn load(path: &Path) -> Result<Self, KbError> {
        let io = |source| KbError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut located = Vec::new();
        if path.is_dir() {
            let mut files = Vec::new();
            for item in std::fs::read_dir(path).map_err(io)? {
                let file = item.map_err(io)?.path();
                if matches!(extension(&file), Some("toml" | "jsonl")) && file.is_file() {
                    files.push(file);
                }
            }
            files.sort();
            for file in files {
                load_file(&file, &mut located)?;
            }
        } else if matches!(extension(path), Some("toml" | "jsonl")) {
            load_file(path, &mut located)?;
        } else if !path.exists() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file or directory",
            )));
        } else {
            return Err(KbError::NotAKnowledgeBase {
                path: path.to_path_buf(),
            });
        }
        if located.is_empty() {
            return Err(KbError::Empty {
                path: path.to_path_buf(),
            });
        }
        Self::from_located(located)
    }

    /// Validates entries built in memory (errors name `<memory>` and the 1-based position).
    pub fn from_entries(entries: Vec<Entry>) -> Result<Self, KbError> {
        let located = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let at = Location {
                    path: PathBuf::from("<memory>"),
                    line: i + 1,
                };
                validate(&e, &at, false).map(|()| (e, at))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_located(located)
    }

    fn from_located(located: Vec<(Entry, Location)>) -> Result<Self, KbError> {
        let mut by_id = HashMap::with_capacity(located.len());
        let mut first_seen: HashMap<String, Location> = HashMap::with_capacity(located.len());
        let mut entries = Vec::with_capacity(located.len());
        for (entry, at) in located {
            if let Some(first) = first_seen.get(&entry.id) {
                return Err(KbError::DuplicateId {
                    id: entry.id,
                    first: first.clone(),
                    second: at,
                });
            }
            first_seen.insert(entry.id.clone(), at);
            by_id.insert(entry.id.clone(), entries.len());
            entries.push(entry);
        }
        Ok(Self { entries, by_id })
    }

    /// All entries, in load order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry (never true for a loaded KB).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

fn load_file(path: &Path, out: &mut Vec<(Entry, Location)>) -> Result<(), KbError> {
    let text = std::fs::read_to_string(path).map_err(|source| KbError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match extension(path) {
        Some("toml") => parse_toml(path, &text, out),
        _ => parse_jsonl(path, &text, out),
    }
}

fn parse_jsonl(path: &Path, text: &str, out: &mut Vec<(Entry, Location)>) -> Result<(), KbError> {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = Location {
            path: path.to_path_buf(),
            line: i + 1,
        };
        let entry: Entry = serde_json::from_str(line).map_err(|e| KbError::Syntax {
            field: field_in_message(&e.to_string()),
            message: format!("{e}"),
            at: at.clone(),
        })?;
        validate(&entry, &at, false)?;
        out.push((entry, at));
    }
    Ok(())
}

/// The TOML file shape: `[[entry]]` tables, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    entry: Vec<toml::Spanned<Entry>>,
}

fn parse_toml(path: &Path, text: &str, out: &mut Vec<(Entry, Location)>) -> Result<(), KbError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: TomlFile = toml::from_str(text).map_err(|e| KbError::Syntax {
        at: Location {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| line_of(s.start)),
        },
        field: field_in_message(e.message()),
        message: e.message().trim().to_string(),
    })?;
    for spanned in file.entry {
        // Point at the entry's `[[entry]]` header, whether the span starts there or at a key.
        let start = spanned.span().start;
        let start = start.min(text.len());
        let header = if text[start..].starts_with("[[") {
            start
        } else {
            text[..start].rfind("[[").unwrap_or(start)
        };
        let at = Location {
            path: path.to_path_buf(),
            line: line_of(header),
        };
        let entry = spanned.into_inner();
        validate(&entry, &at, true)?;
        out.push((entry, at));
    }
    Ok(())
}

/// serde names the field in its messages (`missing field `answer``, `unknown field `foo``):
/// lift it out so the error carries it as data.
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    let field = &message[start..start + len];
    (message.contains("field") && !field.is_empty()).then(|| field.to_string())
}

/// Checks one entry by the rules of the TOML authoring format (categories included), for
/// entries edited outside the files (the gateway's admin API): the same checks, the same
/// field names in the errors, located at `<memory>:1`.
pub fn validate_entry(entry: &Entry) -> Result<(), KbError> {
    let at = Location {
        path: PathBuf::from("<memory>"),
        line: 1,
    };
    validate(entry, &at, true)
}

/// Follow-up questions an entry may offer, and their length: buttons under an answer.
pub const MAX_QUICK_REPLIES: usize = 6;
pub const MAX_QUICK_REPLY_CHARS: usize = 60;

fn validate(entry: &Entry, at: &Location, strict_category: bool) -> Result<(), KbError> {
    let invalid = |field, message: &str| KbError::Invalid {
        at: at.clone(),
        id: entry.id.clone(),
        field,
        message: message.to_string(),
    };
    if entry.id.trim().is_empty() {
        return Err(invalid("id", "must not be empty"));
    }
    if entry.questions.is_empty() {
        return Err(invalid("questions", "must list at least one question"));
    }
    if entry.questions.iter().any(|q| q.trim().is_empty()) {
        return Err(invalid("questions", "must not contain an empty question"));
    }
    if entry.answer.trim().is_empty() {
        return Err(invalid("answer", "must not be empty"));
    }
    if !matches!(entry.lang.as_str(), "zh" | "en") {
        return Err(invalid("lang", "must be \"zh\" or \"en\""));
    }
    if entry.category.trim().is_empty() {
        return Err(invalid("category", "must not be empty"));
    }
    if entry.quick_replies.len() > MAX_QUICK_REPLIES
        || entry
            .quick_replies
            .iter()
            .any(|q| q.trim().is_empty() || q.chars().count() > MAX_QUICK_REPLY_CHARS)
    {
        return Err(invalid(
            "quick_replies",
            &format!(
                "at most {MAX_QUICK_REPLIES} non-empty questions of at most {MAX_QUICK_REPLY_CHARS} characters"
            ),
        ));
    }
    if let Some(needs) = &entry.needs {
        if !NEEDS.contains(&needs.as_str()) {
            return Err(invalid(
                "needs",
                &format!("unknown value, expected one of {}", NEEDS.join(", ")),
            ));
        }
    }
    if strict_category && !CATEGORIES.contains(&entry.category.as_str()) {
        return Err(invalid(
            "category",
            &format!(
                "unknown category, expected one of {}",
                CATEGORIES.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
