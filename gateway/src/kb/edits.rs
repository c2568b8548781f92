//! Editing entries without a restart: each create, update or delete is checked by the KB
//! loader's own rules ([`faq_index::validate_entry`], errors naming the field), appended to the
//! store as the next overlay version with the entry before and after, audited, and applied on
//! this node at once (the other nodes pick it up within a second or two, see [`super::sync`]).
//! A refused edit stores nothing, so the version in use keeps serving.

use faq_index::Entry;
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::session::now_ms;
use crate::store::{AuditEntry, EditRow, StoreError};

/// Longest id (it travels in the protocol's `entry_id`, limited to 128 bytes there too).
const MAX_ID_BYTES: usize = 128;
/// Most questions (canonical and paraphrases) and keywords per entry.
const MAX_QUESTIONS: usize = 100;
/// Longest question or keyword, and longest answer, in characters.
const MAX_QUESTION_CHARS: usize = 500;
const MAX_ANSWER_CHARS: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Not JSON, or not the shape of an entry (400).
    #[error("{message}")]
    BadBody {
        field: Option<String>,
        message: String,
    },
    /// The entry breaks a rule (422).
    #[error("field `{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("no entry `{0}`")]
    NotFound(String),
    #[error("an entry `{0}` exists already; change it with PATCH")]
    Exists(String),
    #[error("knowledge-base edits need the store (store.url is empty)")]
    NoStore,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `PATCH /admin/kb/entries/{id}`: the fields to change; `add_questions` appends paraphrases.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub questions: Option<Vec<String>>,
    pub add_questions: Option<Vec<String>>,
    pub answer: Option<String>,
    pub category: Option<String>,
    pub lang: Option<String>,
    pub keywords: Option<Vec<String>>,
    pub quick_replies: Option<Vec<String>>,
    /// `"order_status"`, or `""` to clear it.
    pub needs: Option<String>,
}

/// Parses a JSON body; the error names the field where serde stopped.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, EditError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        let field = if path.is_empty() || path == "." {
            field_in(&message)
        } else {
            Some(path)
        };
        EditError::BadBody { field, message }
    })
}

/// serde's messages quote the field: ``unknown field `foo` ``, ``missing field `answer` ``.
fn field_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    message
        .contains("field")
        .then(|| message[start..start + len].to_string())
}

fn invalid(field: &str, message: impl Into<String>) -> EditError {
    EditError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The loader's rules, plus bounds on what one edit may store.
pub fn validate(entry: &Entry) -> Result<(), EditError> {
    faq_index::validate_entry(entry).map_err(|err| match err {
        faq_index::KbError::Invalid { field, message, .. } => invalid(field, message),
        other => invalid("entry", other.to_string()),
    })?;
    let id_ok = entry
        .id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if entry.id.len() > MAX_ID_BYTES || !id_ok {
        return Err(invalid(
            "id",
            format!("at most {MAX_ID_BYTES} letters, digits, `-`, `_` or `.`"),
        ));
    }
    for (field, list) in [
        ("questions", &entry.questions),
        ("keywords", &entry.keywords),
    ] {
        if list.len() > MAX_QUESTIONS {
            return Err(invalid(field, format!("at most {MAX_QUESTIONS} items")));
        }
        if list.iter().any(|q| q.chars().count() > MAX_QUESTION_CHARS) {
            return Err(invalid(
                field,
                format!("items of at most {MAX_QUESTION_CHARS} characters"),
            ));
        }
    }
    if entry.answer.chars().count() > MAX_ANSWER_CHARS {
        return Err(invalid(
            "answer",
            format!("at most {MAX_ANSWER_CHARS} characters"),
        ));
    }
    Ok(())
}

impl Patch {
    fn apply(self, mut entry: Entry) -> Entry {
        if let Some(q) = self.questions {
            entry.questions = q;
        }
        for q in self.add_questions.unwrap_or_default() {
            if !entry.questions.iter().any(|have| have.trim() == q.trim()) {
                entry.questions.push(q);
            }
        }
        if let Some(a) = self.answer {
            entry.answer = a;
        }
        if let Some(c) = self.category {
            entry.category = c;
        }
        if let Some(l) = self.lang {
            entry.lang = l;
        }
        if let Some(k) = self.keywords {
            entry.keywords = k;
        }
        if let Some(q) = self.quick_replies {
            entry.quick_replies = q;
        }
        if let Some(n) = self.needs {
            entry.needs = Some(n).filter(|n| !n.is_empty());
        }
        entry
    }
}

/// What an edit does: a new entry, a change, or a deletion.
pub enum Change {
    Create(Entry),
    Update(String, Patch),
    Delete(String),
}

/// Checks and stores one edit, audits it and applies it on this node; returns the stored
/// edit (with its version).
pub async fn apply(
    state: &AppState,
    operator: &str,
    peer: &str,
    change: Change,
) -> Result<EditRow, EditError> {
    let store = state.kb.store().cloned().ok_or(EditError::NoStore)?;
    // Edits are checked against the newest version, not against what this node had.
    super::sync(state).await;
    let index = state.bot.index();
    let current = |id: &str| index.entry(id).cloned();
    let (action, id, before, after) = match change {
        Change::Create(entry) => {
            validate(&entry)?;
            if current(&entry.id).is_some() {
                return Err(EditError::Exists(entry.id));
            }
            ("create", entry.id.clone(), None, Some(entry))
        }
        Change::Update(id, patch) => {
            let before = current(&id).ok_or_else(|| EditError::NotFound(id.clone()))?;
            let after = patch.apply(before.clone());
            if after.id != id {
                return Err(invalid("id", "cannot change; create a new entry instead"));
            }
            validate(&after)?;
            ("update", id, Some(before), Some(after))
        }
        Change::Delete(id) => {
            let before = current(&id).ok_or_else(|| EditError::NotFound(id.clone()))?;
            if index.entries().len() <= 1 {
                return Err(invalid("id", "the knowledge base cannot be left empty"));
            }
            ("delete", id, Some(before), None)
        }
    };
    drop(index);
    let mut edit = EditRow {
        version: 0,
        at_ms: now_ms(),
        operator: operator.to_string(),
        action: action.to_string(),
        entry_id: id.clone(),
        before,
        after,
    };
    edit.version = store.append_kb_edit(edit.clone()).await?;
    let detail = json!({"version": edit.version, "before": edit.before, "after": edit.after});
    store
        .audit(&AuditEntry {
            at_ms: edit.at_ms,
            operator: operator.to_string(),
            action: format!("kb_{action}"),
            target: format!("kb_entry:{id}"),
            peer: peer.to_string(),
            detail: detail.to_string(),
        })
        .await?;
    tracing::info!(operator, action, entry = %id, version = edit.version, "knowledge-base entry edited");
    super::sync(state).await;
    Ok(edit)
}
