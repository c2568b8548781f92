//! Masking of personal data toward agents and logs (PIPL): mainland mobile numbers
//! (138****5678), resident ID numbers, bank card numbers and street addresses, in Chinese and
//! English text. The unmasked text stays only with the session (and the encrypted store).
//!
//! The patterns run on a normalised view of the text ([`normal`]: NFKC, format characters
//! dropped) and numbers may be broken up by separators ([`digits`]), so full-width digits,
//! zero-width spaces or `138.1234.5678` do not get a number past the masking. Only what is
//! masked changes; the rest of the text reaches the agent as written.

mod digits;
mod normal;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

use digits::Kind;
use normal::Normal;

struct Patterns {
    address_zh: Regex,
    address_en: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        // These literals are fixed and covered by tests; failing to compile one is a bug.
        #[allow(clippy::expect_used)]
        let re = |p: &str| Regex::new(p).expect("valid masking pattern");
        Patterns {
            // 省/市/区/路/街/号 style street address: keep the road name, hide the rest.
            address_zh: re(r"([\p{Han}]{2,}(?:路|街|道|巷|弄|胡同|大道))([\p{Han}0-9A-Za-z\-\s]*?[0-9]+\s*(?:号|栋|幢|单元|室|楼)[\p{Han}0-9A-Za-z\-号栋幢单元室楼]*)"),
            address_en: re(r"(?i)\b[0-9]{1,5}\s+(?:[a-z]+\s){1,4}(?:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr)\b\.?"),
        }
    })
}

/// The masked form of a number found by [`digits::find`].
fn masked_number(n: &digits::Found, normal: &str) -> String {
    let d = &n.digits;
    match n.kind {
        Kind::IdCard => format!("{}********{}", &d[..6], &d[14..]),
        Kind::BankCard => format!("**** **** **** {}", &d[d.len() - 4..]),
        Kind::Phone { prefix } => {
            let p = &d[prefix..];
            // A country code written apart (`+86 138…`) stays as it was written.
            let code = match n.after_prefix {
                Some(at) => &normal[n.from..at],
                None => &d[..prefix],
            };
            format!("{code}{}****{}", &p[..3], &p[7..])
        }
    }
}

/// Returns `text` with personal data masked; borrows when there is nothing to mask.
///
/// Masking masked text changes nothing: what one round leaves visible (the ends of a number,
/// digits next to it) can read as a number of its own (`138****5678 1234567890123` holds the
/// card `5678 1234567890123`), and the frames toward agents mask again what was masked, so
/// rounds repeat until nothing changes. Every round that changes the text removes digits, so
/// this ends; most texts take one round, a text with a number two.
pub fn mask_text(text: &str) -> Cow<'_, str> {
    let Some(mut masked) = mask_once(text) else {
        return Cow::Borrowed(text);
    };
    while let Some(again) = mask_once(&masked) {
        if again == masked {
            break;
        }
        masked = again;
    }
    Cow::Owned(masked)
}

/// One round of masking; `None` when there is nothing to mask.
fn mask_once(text: &str) -> Option<String> {
    let normal = Normal::new(text);
    let p = patterns();
    // (original byte range, replacement), then applied in order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for n in digits::find(&normal.text) {
        if let Some((a, b)) = normal.original_range(n.from, n.to) {
            edits.push((a, b, masked_number(&n, &normal.text)));
        }
    }
    for c in p.address_zh.captures_iter(&normal.text) {
        let (Some(all), Some(road)) = (c.get(0), c.get(1)) else {
            continue;
        };
        if let Some((a, b)) = normal.original_range(road.end(), all.end()) {
            edits.push((a, b, "****".into()));
        }
    }
    for m in p.address_en.find_iter(&normal.text) {
        if let Some((a, b)) = normal.original_range(m.start(), m.end()) {
            edits.push((a, b, "[address]".into()));
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|&(a, b, _)| (a, std::cmp::Reverse(b)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (a, b, replacement) in edits {
        if a < at {
            // Overlaps what was already masked: hide the rest of it too.
            at = at.max(b);
            continue;
        }
        out.push_str(&text[at..a]);
        out.push_str(&replacement);
        at = b;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// `text` as the masking patterns see it: NFKC, format characters dropped. The leak rules
/// match on it too, so `微\u{200b}信` or full-width letters do not get past them.
pub fn normalise(text: &str) -> String {
    Normal::new(text).text
}

/// How the masker reads a number, for the fuzz targets (`gateway/fuzz`) to check its output
/// against; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::digits::{is_separator, MAX_GAP};
}
