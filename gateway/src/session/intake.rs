//! A customer message taken in: stored, acknowledged again (a re-send), or refused with
//! the reason, the same way wherever customers write (the chat, a left message).

use super::{Accepted, Session};
use crate::protocol::{ErrorCode, Rich, ServerFrame};

impl Session {
    /// Takes a customer message into the transcript. `false` when it is not new, and the caller
    /// stops there: a re-send (stored and answered before a reconnect) is acknowledged again,
    /// a refused one is told why.
    pub fn take_in(&self, id: &str, text: &str, rich: Rich) -> bool {
        let (code, message) = match self.accept_customer_rich(id, text, rich) {
            Accepted::New => return true,
            Accepted::Duplicate => {
                self.emit(&ServerFrame::Ack {
                    id: id.to_string(),
                    duplicate: true,
                });
                return false;
            }
            Accepted::RateLimited => (
                ErrorCode::RateLimited,
                "too many messages; this one was not stored, send it again shortly",
            ),
            Accepted::TranscriptFull => (
                ErrorCode::TranscriptFull,
                "the conversation is at its length limit; message not stored",
            ),
        };
        self.error(code, message, Some(id.to_string()));
        false
    }
}
