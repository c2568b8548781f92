//! The customer socket's text-frame parser, exactly as the connection calls it
//! (`customer::flow::on_text`): a frame or a typed error whose text stays bounded, and a
//! parsed frame that encodes, parses back to itself and keeps its text out of `Debug`.
#![no_main]

use gateway::protocol::{parse_customer_frame, CustomerFrame, ServerFrame};
use gateway_fuzz::{check_error, check_redacted};
use libfuzzer_sys::fuzz_target;

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
            match &frame {
                CustomerFrame::Message { id, text, .. } => check_redacted(&debug, text, &[id.as_str()]),
                CustomerFrame::SurveyAnswer {
                    comment: Some(c), ..
                } => check_redacted(&debug, c, &[]),
                _ => {}
            }
        }
        Err(err) => {
            check_error(&err);
            // What the session then sends: an `error` frame.
            let frame = ServerFrame::error(err.code, err.message);
            serde_json::to_string(&frame).expect("an error frame encodes");
        }
    }
});
