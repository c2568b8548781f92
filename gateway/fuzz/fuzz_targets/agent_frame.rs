//! The agent socket's text-frame parser, exactly as the connection calls it
//! (`agent::AgentHandler::on_text`): a frame or a typed error whose text stays bounded, and a
//! parsed frame that encodes, parses back to itself and keeps its text out of `Debug`.
#![no_main]

use gateway::protocol::{parse_agent_frame, AgentFrame, AgentServerFrame, ErrorCode};
use libfuzzer_sys::fuzz_target;

/// The longest error text the gateway sends back for a bad frame, whatever the frame.
const MAX_ERROR_CHARS: usize = 320;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_agent_frame(text) {
        Ok(frame) => {
            let json = serde_json::to_string(&frame).expect("a parsed frame encodes");
            let again = parse_agent_frame(&json).expect("an encoded frame parses");
            assert!(again == frame, "round trip changed the frame: {json}");
            let debug = format!("{frame:?}");
            if let AgentFrame::Message { session, id, text } = &frame {
                if looks_like_prose(text)
                    && !session.contains(text.as_str())
                    && !id.contains(text.as_str())
                {
                    assert!(
                        !debug.contains(text.as_str()),
                        "Debug shows the text: {debug}"
                    );
                }
            }
            if let AgentFrame::Transfer { group, agent, .. } = &frame {
                assert!(
                    group.is_some() != agent.is_some(),
                    "transfer names one target"
                );
            }
        }
        Err(err) => {
            let chars = err.message.chars().count();
            assert!(chars <= MAX_ERROR_CHARS, "{chars} chars: {:?}", err.message);
            if err.code == ErrorCode::UnknownType {
                assert!(echo_of_type(&err.message) <= 64, "{:?}", err.message);
            }
            // What the agent session then sends: an `error` frame.
            let frame = AgentServerFrame::Error {
                code: err.code,
                message: err.message,
                id: None,
            };
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
    rest[..end].trim_end_matches('…').chars().count()
}
