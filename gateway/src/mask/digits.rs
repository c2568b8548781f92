//! Numbers written to slip past a pattern: digits split by spaces, dots, dashes, underscores,
//! middle dots or slashes (`138.1234.5678`, `1 3 8 1 2 …`). Digits joined by at most
//! [`MAX_GAP`] separator characters count as one run of groups; any consecutive groups of a
//! run that spell a phone, ID or card number are masked as one.

/// Separator characters a number may be broken up with (after NFKC, so the ideographic space
/// and full-width forms are already the ASCII ones).
pub fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | '-'
                | '_'
                | '·'
                | '•'
                | '・'
                | '/'
                | '\\'
                | ','
                | '、'
                | '('
                | ')'
                | '+'
                | '*'
                | '~'
                | '|'
                | '\''
                | '"'
                | '‐'
                | '‑'
                | '‒'
                | '–'
                | '—'
                | '―'
                | '−'
                | '﹣'
                | '。'
        )
}

/// Separator characters allowed between two digit groups of one number.
pub const MAX_GAP: usize = 3;
/// The longest number masked (a 19-digit card).
const MAX_DIGITS: usize = 19;

/// What a run of digits is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    IdCard,
    BankCard,
    /// `prefix`: 2 when the number starts with the country code 86.
    Phone {
        prefix: usize,
    },
}

/// A number found in the normalised text.
pub(super) struct Found {
    /// Byte range in the normalised text.
    pub from: usize,
    pub to: usize,
    /// Byte offset where the digits after a separate country-code group start (to keep
    /// `+86 ` as written), if any.
    pub after_prefix: Option<usize>,
    pub kind: Kind,
    /// Its digits (and a final `X` of an ID number), uppercase.
    pub digits: String,
}

/// One group of digits: byte range and its digits.
struct Group {
    from: usize,
    to: usize,
    digits: String,
}

/// The groups of `text`, each with the index of the run it belongs to.
fn groups(text: &str) -> Vec<(usize, Group)> {
    let mut out: Vec<(usize, Group)> = Vec::new();
    let mut run = 0;
    let mut gap: Option<usize> = None; // separators seen since the last group
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c.is_ascii_digit() {
            let mut g = Group {
                from: at,
                to: at + 1,
                digits: c.to_string(),
            };
            while let Some(&(at, d)) = chars.peek() {
                // An ID number may end in X; an X right after digits ends the group.
                let x = matches!(d, 'x' | 'X');
                if d.is_ascii_digit() || x {
                    g.digits.push(d.to_ascii_uppercase());
                    g.to = at + 1;
                    chars.next();
                    if x {
                        break;
                    }
                } else {
                    break;
                }
            }
            match gap {
                Some(n) if n <= MAX_GAP && !out.is_empty() => {}
                _ => run += 1,
            }
            out.push((run, g));
            gap = Some(0);
        } else if matches!(c, 'x' | 'X') && matches!(gap, Some(n) if (1..=MAX_GAP).contains(&n)) {
            // The check character of an ID number written apart: `… 123 X`.
            let g = Group {
                from: at,
                to: at + 1,
                digits: "X".into(),
            };
            out.push((run, g));
            gap = None;
        } else if is_separator(c) {
            gap = gap.map(|n| n + 1);
        } else {
            gap = None;
        }
    }
    out
}

/// The kind of number `d` is, if it is one that must be masked.
pub(super) fn classify(d: &str) -> Option<Kind> {
    let b = d.as_bytes();
    let all_digits = b.iter().all(u8::is_ascii_digit);
    if b.len() == 18 && b[..17].iter().all(u8::is_ascii_digit) && valid_id(b) {
        return Some(Kind::IdCard);
    }
    if !all_digits {
        return None;
    }
    if (16..=MAX_DIGITS).contains(&b.len()) {
        return Some(Kind::BankCard);
    }
    let phone = |p: &[u8]| p.len() == 11 && p[0] == b'1' && (b'3'..=b'9').contains(&p[1]);
    if phone(b) {
        return Some(Kind::Phone { prefix: 0 });
    }
    if b.len() == 13 && b.starts_with(b"86") && phone(&b[2..]) {
        return Some(Kind::Phone { prefix: 2 });
    }
    None
}

/// An 18-character resident ID: area code not starting with 0, a birth date in 19xx/20xx,
/// three digits, then a check digit or `X`.
fn valid_id(b: &[u8]) -> bool {
    let n = |r: std::ops::Range<usize>| -> u32 {
        b[r].iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    b[0] != b'0'
        && (b[6..8] == *b"19" || b[6..8] == *b"20")
        && (1..=12).contains(&n(10..12))
        && (1..=31).contains(&n(12..14))
}

/// Every number to mask in the normalised `text`, in order of where they start: from each
/// group, the longest stretch that is one. They may overlap: skipping past a match would let a
/// card read greedily swallow the start of a phone number written after it
/// (`000000000000 1381 2345678` showed `1381 2345678`).
pub(super) fn find(text: &str) -> Vec<Found> {
    let groups = groups(text);
    let mut found = Vec::new();
    for i in 0..groups.len() {
        let run = groups[i].0;
        // The longest stretch of groups from `i` that is a number to mask.
        let mut best: Option<(usize, usize, Kind, String)> = None;
        let mut joined = String::new();
        for (j, (r, g)) in groups.iter().enumerate().skip(i) {
            if *r != run || joined.len() + g.digits.len() > MAX_DIGITS {
                break;
            }
            joined.push_str(&g.digits);
            if let Some(kind) = classify(&joined) {
                best = Some((j, g.to, kind, joined.clone()));
            } else if let Some(bare) = joined.strip_suffix('X') {
                // `…5678x`: the X is not part of the number.
                if let Some(kind) = classify(bare) {
                    best = Some((j, g.to - 1, kind, bare.to_string()));
                }
            }
            if joined.ends_with('X') {
                break;
            }
        }
        if let Some((j, to, kind, digits)) = best {
            let after_prefix = match kind {
                Kind::Phone { prefix: 2 } if groups[i].1.digits == "86" && j > i => {
                    Some(groups[i + 1].1.from)
                }
                _ => None,
            };
            found.push(Found {
                from: groups[i].1.from,
                to,
                after_prefix,
                kind,
                digits,
            });
        }
    }
    found
}
