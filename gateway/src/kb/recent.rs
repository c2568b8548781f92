//! What the bot last did in each session, kept for a short while: which entry it answered
//! with or which it suggested, and the (masked) question. A later pick, "not helpful", hand-off
//! or new question decides whether that question counts as a miss, and which entry's figures
//! move. Bounded: at most [`MAX_SESSIONS`] sessions, each forgotten after [`KEEP`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::misses::Nearest;

use crate::telemetry::metric;

/// Sessions remembered at once; past it new ones are not followed (and counted).
const MAX_SESSIONS: usize = 100_000;
/// A hand-off this soon after an answer counts against the answer.
pub const KEEP: Duration = Duration::from_secs(120);
/// Suggestions not picked within this time count as a miss.
pub const PICK_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    Answered(String),
    Suggested(Vec<String>),
}

/// The question behind the last offer.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Masked.
    pub question: String,
    pub lang: &'static str,
    pub channel: &'static str,
    pub nearest: Vec<Nearest>,
}

#[derive(Debug, Clone)]
pub struct Recent {
    pub asked: Arc<Asked>,
    pub offer: Offer,
    pub at: Instant,
    /// Already recorded as a miss (a "not helpful" before the hand-off it causes).
    pub missed: bool,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<Arc<str>, Recent>>,
}

impl Sessions {
    /// Remembers the session's latest offer; returns what it replaces.
    pub fn put(&self, session: &Arc<str>, recent: Recent) -> Option<Recent> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(session) && map.len() >= MAX_SESSIONS {
            metrics::counter!(metric::KB_FOLLOWED_FULL_TOTAL).increment(1);
            return None;
        }
        map.insert(session.clone(), recent)
    }

    pub fn take(&self, session: &str) -> Option<Recent> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(session)
    }

    /// Updates the session's record in place, if there is one.
    pub fn update<R>(&self, session: &str, f: impl FnOnce(&mut Recent) -> R) -> Option<R> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(session).map(f)
    }

    /// Forgets what is old: returns the suggestions nobody picked in time (misses).
    pub fn sweep(&self, now: Instant) -> Vec<Recent> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut unpicked = Vec::new();
        map.retain(|_, r| {
            let age = now.saturating_duration_since(r.at);
            match r.offer {
                Offer::Suggested(_) if age >= PICK_WITHIN => {
                    unpicked.push(r.clone());
                    false
                }
                _ => age < KEEP,
            }
        });
        unpicked
    }
}
