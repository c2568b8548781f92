//! The customer socket's text-frame parser, exactly as the connection calls it
//! (`customer::flow::on_text`): a frame or a typed error whose text stays bounded, and a
//! parsed frame that encodes, parses back to itself and keeps its text out of `Debug`.
#![no_main]

use gateway::protocol::{parse_customer_frame, CustomerFrame, ErrorCode, ServerFrame};
use libfuzzer_sys::fuzz_target;

/// The longest error text the gateway sends back for a bad frame, whatever the frame.
const MAX_ERROR_CHARS: usize = 320;

fuzz_target!(|data: &[u8]| {
    // The socket hands over text frames as UTF-8 (tungstenite checks it).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_customer_frame(text) {
        Ok(frame) => {
            let json = serde_json::to_string(&frame).expect("a parsed frame encodes");
            let again = parse_customer_frame(&json).expect("an encoded frame parses");
            assert!(again == frame, "round trip changed the frame: {json}");
            let debug = format!("{frame:?}");
            let secret = match &frame {
                CustomerFrame::Message { id, text } if !id.contains(text.as_str()) => Some(text),
                CustomerFrame::SurveyAnswer {
                    comment: Some(c), ..
                } => Some(c),
                _ => None,
            };
            if let Some(s) = secret.filter(|s| looks_like_prose(s)) {
                assert!(!debug.contains(s.as_str()), "Debug shows the text: {debug}");
            }
        }
        Err(err) => {
            let chars = err.message.chars().count();
            assert!(chars <= MAX_ERROR_CHARS, "{chars} chars: {:?}", err.message);
            if err.code == ErrorCode::UnknownType {
                assert!(echo_of_type(&err.message) <= 64, "{:?}", err.message);
            }
            // What the session then sends: an `error` frame.
            let frame = ServerFrame::error(err.code, err.message);
            serde_json::to_string(&frame).expect("an error frame encodes");
        }
    }
});

/// Text that cannot be mistaken for the structure around it in a `Debug` dump.
fn looks_like_prose(s: &str) -> bool {
    s.chars().count() >= 16 && s.chars().all(char::is_alphanumeric)
}

/// Characters of the client's `type` echoed in an `unknown_type` message.
fn echo_of_type(message: &str) -> usize {
    let rest = message
        .strip_prefix("unknown frame type `")
        .expect("unknown_type message shape");
    let end = rest
        .rfind("`, expected one of: ")
        .expect("unknown_type message shape");
    // `clip` marks a cut with an ellipsis, which is not client input.
    rest[..end].trim_end_matches('…').chars().count()
}
