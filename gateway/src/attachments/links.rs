//! Short-lived signed links to attachments: `/files/ID?exp=…&sig=…` (`&v=thumb` for the
//! thumbnail, `&r=…` naming the reader when it is an agent or an auditor, whose reads are
//! audited). The signature is an HMAC-SHA-256 over id, part, reader and expiry with a key
//! derived from the store key, so every node that shares the store verifies every other
//! node's links, and a link cannot be widened (another file, the full size from a thumbnail,
//! another reader, a later expiry) without the key.
//!
//! Links are never stored as the truth: a frame that carries one gets fresh links each time
//! it is written to a socket (live, replayed or in an agent's history), see [`Links::refresh`].

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::protocol::AttachmentInfo;

/// Which bytes of an attachment a link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    File,
    Thumb,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::File => "file",
            Part::Thumb => "thumb",
        }
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link has expired; open the message again for a fresh one")]
    Expired,
    #[error("this link is not valid")]
    Bad,
}

/// Signs and checks links.
pub struct Links {
    key: [u8; 32],
    ttl_s: u64,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Links(ttl {}s)", self.ttl_s)
    }
}

pub fn now_s() -> u64 {
    crate::session::now_ms() / 1000
}

impl Links {
    pub fn new(key: [u8; 32], ttl_s: u64) -> Self {
        Self {
            key,
            ttl_s: ttl_s.max(1),
        }
    }

    fn mac(&self, id: &str, part: Part, reader: &str, exp: u64) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).ok()?;
        for field in [id, part.as_str(), reader, &exp.to_string()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        Some(mac)
    }

    /// A link to `part` of `id` for `reader` (empty: the customer), valid from `now_s` on for
    /// the configured time.
    pub fn url(&self, id: &str, part: Part, reader: &str, now_s: u64) -> String {
        let exp = now_s + self.ttl_s;
        let sig = self
            .mac(id, part, reader, exp)
            .map(|m| BASE64URL_NOPAD.encode(&m.finalize().into_bytes()))
            .unwrap_or_default();
        let mut url = format!("/files/{id}?exp={exp}&sig={sig}");
        if part == Part::Thumb {
            url.push_str("&v=thumb");
        }
        if !reader.is_empty() {
            url.push_str("&r=");
            url.push_str(&encode(reader));
        }
        url
    }

    /// Checks a link's expiry and signature (constant time).
    pub fn verify(
        &self,
        id: &str,
        part: Part,
        reader: &str,
        exp: u64,
        sig: &str,
        now_s: u64,
    ) -> Result<(), LinkError> {
        let sig = BASE64URL_NOPAD
            .decode(sig.as_bytes())
            .map_err(|_| LinkError::Bad)?;
        let mac = self.mac(id, part, reader, exp).ok_or(LinkError::Bad)?;
        mac.verify_slice(&sig).map_err(|_| LinkError::Bad)?;
        if exp < now_s {
            return Err(LinkError::Expired);
        }
        if exp > now_s + self.ttl_s + 60 {
            return Err(LinkError::Bad); // signed with a longer life than ours: not ours
        }
        Ok(())
    }

    /// Fresh links in `info` for `reader`.
    pub fn fill(&self, info: &mut AttachmentInfo, reader: &str) {
        let now = now_s();
        info.url = Some(self.url(&info.id, Part::File, reader, now));
        info.thumb_url =
            (info.kind == "image").then(|| self.url(&info.id, Part::Thumb, reader, now));
    }

    /// The frame `text` with fresh links wherever it carries an attachment (its own, or those
    /// of an agent's `history`); `None` when it carries none (the usual case: a cheap check).
    pub fn refresh(&self, text: &str, reader: &str) -> Option<String> {
        if !text.contains("\"attachment\":{") {
            return None;
        }
        let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
        let fill = |slot: Option<&mut serde_json::Value>| {
            let Some(slot) = slot.filter(|s| s.is_object()) else {
                return;
            };
            if let Ok(mut info) = serde_json::from_value::<AttachmentInfo>(slot.clone()) {
                self.fill(&mut info, reader);
                if let Ok(v) = serde_json::to_value(&info) {
                    *slot = v;
                }
            }
        };
        fill(value.get_mut("attachment"));
        if let Some(history) = value.get_mut("history").and_then(|h| h.as_array_mut()) {
            for line in history {
                fill(line.get_mut("attachment"));
            }
        }
        serde_json::to_string(&value).ok()
    }
}

/// Percent-encodes what is not unreserved in a URL.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (u64, String) {
        let query = url.split_once('?').unwrap().1;
        let get = |k: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        (get("exp").parse().unwrap(), get("sig"))
    }

    #[test]
    fn links_expire_and_cannot_be_altered() {
        let links = Links::new([7; 32], 600);
        let url = links.url("a1", Part::File, "agent:x", 1000);
        let (exp, sig) = parts(&url);
        assert_eq!(exp, 1600);
        assert_eq!(
            links.verify("a1", Part::File, "agent:x", exp, &sig, 1200),
            Ok(())
        );
        assert_eq!(
            links.verify("a1", Part::File, "agent:x", exp, &sig, 1601),
            Err(LinkError::Expired)
        );
        assert_eq!(
            links.verify("a2", Part::File, "agent:x", exp, &sig, 1200),
            Err(LinkError::Bad)
        );
        assert_eq!(
            links.verify("a1", Part::Thumb, "agent:x", exp, &sig, 1200),
            Err(LinkError::Bad)
        );
        assert_eq!(
            links.verify("a1", Part::File, "", exp, &sig, 1200),
            Err(LinkError::Bad)
        );
        assert_eq!(
            links.verify("a1", Part::File, "agent:x", exp + 1, &sig, 1200),
            Err(LinkError::Bad)
        );
        assert!(url.contains("&r=agent%3Ax"));
    }
}
