//! The agent socket's text-frame parser, exactly as the connection calls it
//! (`agent::AgentHandler::on_text`): a frame or a typed error whose text stays bounded, and a
//! parsed frame that encodes, parses back to itself and keeps its text out of `Debug`.
#![no_main]

use gateway::protocol::{parse_agent_frame, AgentFrame, AgentServerFrame};
use gateway_fuzz::{check_error, check_redacted};
use libfuzzer_sys::fuzz_target;

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
            match &frame {
                AgentFrame::Message { session, id, text, .. } => {
                    check_redacted(&debug, text, &[session.as_str(), id.as_str()]);
                }
                AgentFrame::Transfer { group, agent, .. } => {
                    assert!(
                        group.is_some() != agent.is_some(),
                        "transfer names one target"
                    );
                }
                _ => {}
            }
        }
        Err(err) => {
            check_error(&err);
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
