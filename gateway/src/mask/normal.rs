//! The normalised view of a text that the masking patterns run on: NFKC (full-width and
//! circled digits become ASCII digits), Unicode format characters (Cf: zero-width spaces and
//! joiners, BOM, bidi marks) dropped. Every normalised character remembers the bytes of the
//! original it came from, so a match is replaced in the original text and everything around it
//! reaches the agent exactly as the customer wrote it.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A normalised text and, per normalised character, where it came from.
pub(super) struct Normal {
    /// The normalised text.
    pub text: String,
    /// Per normalised character: its byte offset in `text` and the original byte range.
    chars: Vec<(usize, usize, usize)>,
}

/// Unicode format characters (general category Cf) that can hide inside a number without
/// showing. `regex` knows the category, so the one list is the Unicode database's.
fn is_format(c: char) -> bool {
    use std::sync::OnceLock;
    static CF: OnceLock<Option<regex::Regex>> = OnceLock::new();
    match CF.get_or_init(|| regex::Regex::new(r"^\p{Cf}$").ok()) {
        Some(re) => {
            let mut buf = [0u8; 4];
            re.is_match(c.encode_utf8(&mut buf))
        }
        // Unreachable (the pattern is fixed); fall back to the usual invisible ones.
        None => matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}'),
    }
}

impl Normal {
    pub fn new(original: &str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut chars = Vec::with_capacity(original.len());
        for (start, c) in original.char_indices() {
            let end = start + c.len_utf8();
            // ASCII and the unified Han ideographs (most of a Chinese chat) are their own NFKC
            // and never format characters: no lookup for them.
            if c.is_ascii() || ('\u{4e00}'..='\u{9fff}').contains(&c) {
                chars.push((text.len(), start, end));
                text.push(c);
                continue;
            }
            if is_format(c) {
                continue;
            }
            // Character by character: compatibility forms are what matter here, and a
            // combining mark glued onto a digit is dropped like a format character.
            for n in std::iter::once(c).nfkc() {
                if is_combining_mark(n) || is_format(n) {
                    continue;
                }
                chars.push((text.len(), start, end));
                text.push(n);
            }
        }
        Self { text, chars }
    }

    /// The original byte range covering the normalised byte range `from..to`.
    pub fn original_range(&self, from: usize, to: usize) -> Option<(usize, usize)> {
        let first = self.chars.partition_point(|&(at, _, _)| at < from);
        let last = self.chars.partition_point(|&(at, _, _)| at < to);
        let start = self.chars.get(first)?.1;
        let end = self.chars.get(last.checked_sub(1)?)?.2;
        (start < end).then_some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::Normal;

    #[test]
    fn maps_back_to_the_original() {
        let n = Normal::new("电话１３８\u{200b}1");
        assert_eq!(n.text, "电话1381");
        let (a, b) = n.original_range(6, 10).unwrap();
        assert_eq!(&"电话１３８\u{200b}1"[a..b], "１３８\u{200b}1");
    }
}
