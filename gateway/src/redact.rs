//! `Debug` for the types that carry what people wrote: the structure and ids stay, the text
//! goes. A `?frame` in a log line, a panic message or a debugger then cannot spill a phone
//! number or an address, whatever the log level.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields whose value is free text from a customer or agent (or may quote it, like an error
/// message about a bad field), replaced by their length.
const TEXT_FIELDS: &[&str] = &[
    "text",
    "comment",
    "visitor",
    "message",
    "question",
    // Identified customers and left messages (issue #17).
    "name",
    "phone",
    "contact",
    "reply",
    "first_customer_message",
    "last_agent_message",
];

/// A string shown in `Debug` only by its length.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} chars>", self.0.chars().count())
    }
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if TEXT_FIELDS.contains(&key.as_str()) => {
                        *v = Value::String(format!("{:?}", Redacted(s)));
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Writes `value` as `name{…}` with its JSON form's text fields redacted.
pub fn debug_redacted<T: Serialize>(
    value: &T,
    name: &str,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match serde_json::to_value(value) {
        Ok(mut v) => {
            redact(&mut v);
            write!(f, "{name}{v}")
        }
        Err(_) => write!(f, "{name}{{..}}"),
    }
}

/// Implements `Debug` through [`debug_redacted`] for serialisable types.
#[macro_export]
macro_rules! redacted_debug {
    ($($ty:ty),* $(,)?) => {
        $(impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                $crate::redact::debug_redacted(self, stringify!($ty), f)
            }
        })*
    };
}

/// A secret string that never prints (Debug shows its length only).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} chars)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::{AgentServerFrame, CustomerFrame, ServerFrame};
    use crate::routing::CustomerEvent;

    #[test]
    fn debug_of_text_carrying_types_has_no_text() {
        let secret = "我的手机13812345678 北京市朝阳区建国路88号";
        let dumps = [
            format!(
                "{:?}",
                CustomerEvent::AgentMessage {
                    agent: "a01".into(),
                    id: "a-1".into(),
                    text: secret.into(),
                    rich: Default::default(),
                }
            ),
            format!(
                "{:?}",
                CustomerFrame::Message {
                    id: "c-1".into(),
                    text: secret.into(),
                    attachment: None,
                }
            ),
            format!(
                "{:?}",
                AgentServerFrame::Message {
                    session: "s".into(),
                    id: "c-1".into(),
                    text: secret.into(),
                    rich: Default::default(),
                }
            ),
            format!(
                "{:?}",
                ServerFrame::error(crate::protocol::ErrorCode::BadField, secret)
            ),
        ];
        for d in dumps {
            assert!(!d.contains("13812345678") && !d.contains("建国路"), "{d}");
            assert!(d.contains("redacted"), "{d}");
        }
    }
}
