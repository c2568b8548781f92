//! What the two frame-parser targets check alike.

use gateway::protocol::{ErrorCode, FrameError};

/// The longest error text the gateway sends back for a bad frame, whatever the frame.
pub const MAX_ERROR_CHARS: usize = 320;

/// A refused frame's error is bounded: at most [`MAX_ERROR_CHARS`], and an unknown `type` is
/// echoed at most 64 characters (the README's promise).
pub fn check_error(err: &FrameError) {
    let chars = err.message.chars().count();
    assert!(chars <= MAX_ERROR_CHARS, "{chars} chars: {:?}", err.message);
    if err.code == ErrorCode::UnknownType {
        let rest = err
            .message
            .strip_prefix("unknown frame type `")
            .expect("unknown_type message shape");
        let end = rest
            .rfind("`, expected one of: ")
            .expect("unknown_type message shape");
        // `clip` marks a cut with an ellipsis, which is not client input.
        let echoed = rest[..end].trim_end_matches('…').chars().count();
        assert!(echoed <= 64, "{:?}", err.message);
    }
}

/// `text` is not in `debug` when it is text that cannot be mistaken for the structure around
/// it in a `Debug` dump (nor found in the `ids` shown there).
pub fn check_redacted(debug: &str, text: &str, ids: &[&str]) {
    let prose = text.chars().count() >= 16 && text.chars().all(char::is_alphanumeric);
    if prose && !ids.iter().any(|id| id.contains(text)) {
        assert!(!debug.contains(text), "Debug shows the text: {debug}");
    }
}
