//! Text analysis: normalisation and the terms a text is indexed and searched by.
//!
//! The same function, [`analyze`], produces the index terms of every paraphrase and the query
//! terms, so the two sides always agree (tantivy's `QueryParser` would instead turn a Chinese query
//! into one exact phrase: "退款怎么申请" would then never find "怎么申请退款").
//!
//! Pipeline: [`normalize`] (full-width → half-width, Traditional → Simplified, lowercase, order
//! numbers and punctuation dropped, colloquial spellings folded: see [`colloquial`]), then per
//! script:
//! - Chinese runs: jieba words (default mode), character bigrams (recall when jieba segments two
//!   wordings differently, the parts of long words, and typo tolerance) and
//!   character unigrams (a weak last resort);
//! - Latin runs: English words without stop words, Snowball-stemmed, plus character trigrams of
//!   each word (typo tolerance: "unsubsrcibe" still shares most trigrams with "unsubscribe");
//! - synonym groups add a canonical word (see [`synonyms`]).

mod colloquial;
mod synonyms;
mod t2s;

use std::cell::RefCell;

use tantivy::tokenizer::{
    Language, SimpleTokenizer, Stemmer, TextAnalyzer, TokenStream, Tokenizer,
};

/// English words that carry no intent. Question words are here too: "what", "how", "when" start
/// out-of-scope questions as often as shop questions, so they must not make them look alike.
const EN_STOP: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "mine", "myself", "we", "our", "ours", "us", "you", "your",
    "yours", "u", "ur", "ya", "he", "she", "him", "her", "it", "its", "they", "them", "their",
    "this", "that", "these", "those", "am", "is", "are", "was", "were", "be", "been", "being",
    "have", "has", "had", "having", "do", "does", "did", "doing", "will", "would", "shall",
    "should", "can", "could", "may", "might", "must", "to", "of", "in", "on", "at", "by", "for",
    "with", "about", "from", "into", "over", "up", "out", "off", "and", "or", "but", "if", "so",
    "than", "then", "too", "very", "just", "also", "there", "here", "what", "which", "who", "whom",
    "whose", "when", "where", "why", "how", "all", "any", "some", "each", "please", "pls", "plz",
    "hi", "hello", "hey", "thanks", "thank", "im", "ive", "id", "ill", "get", "got", "s", "t", "m",
    "d", "ll", "re", "ve", "is", "wanna", "gonna", "one", "much", "many",
];

/// Chinese words that carry no intent (particles, pronouns, politeness).
const ZH_STOP: &[&str] = &[
    "的", "了", "吗", "呢", "啊", "吧", "呀", "哦", "嘛", "么", "我", "我们", "我的", "你", "你们",
    "您", "他", "她", "它", "是", "在", "和", "与", "及", "就", "都", "也", "请问", "请", "一下",
    "这个", "那个", "个", "啦", "哈", "嗯", "得", "地", "着", "把", "被",
];

/// Characters left out of the unigram terms (too frequent to say anything alone).
const ZH_STOP_CHARS: &str = "的了吗呢啊吧呀哦嘛么我你您是在个啦哈嗯";

/// The terms of one text, by index field.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Terms {
    /// Jieba words, stemmed English words and synonym canonicals.
    pub words: Vec<String>,
    /// Chinese character bigrams.
    pub bigrams: Vec<String>,
    /// Chinese characters.
    pub unigrams: Vec<String>,
    /// Character trigrams of English words, with `#` marking the word boundaries.
    pub trigrams: Vec<String>,
    /// Whether the text says something does not happen (不/没/无法…).
    pub negated: bool,
    /// The normalised characters as sounds, for [`crate::sequence`].
    pub sounds: Vec<u32>,
}

impl Terms {
    /// Whether the text yielded no term at all (empty, punctuation, only stop words).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
            && self.bigrams.is_empty()
            && self.unigrams.is_empty()
            && self.trigrams.is_empty()
    }
}

pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Folds the ways customers type the same thing onto one form.
///
/// Full-width ASCII (ＡＢＣ１２３, typed with a Chinese IME) becomes half-width, Traditional
/// becomes Simplified, letters are lowercased, apostrophes are dropped ("don't" → "dont"),
/// letters and digits are split ("order732201" → "order 732201"), numbers of three or more digits
/// (order numbers, amounts, masked `***`) are dropped as noise, every other non-word character
/// becomes a space, and colloquial spellings become standard ones (啥 → 什么).
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut digits = String::new();
    let flush_digits = |digits: &mut String, out: &mut String| {
        if !digits.is_empty() && digits.len() < 3 {
            out.push(' ');
            out.push_str(digits);
            out.push(' ');
        } else {
            out.push(' ');
        }
        digits.clear();
    };
    for raw in text.chars() {
        let c = match raw as u32 {
            0xFF01..=0xFF5E => char::from_u32(raw as u32 - 0xFEE0).unwrap_or(raw),
            0x3000 => ' ',
            _ => t2s::simplify(raw),
        };
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            flush_digits(&mut digits, &mut out);
        }
        if c == '\'' || c == '’' {
            continue;
        }
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    if !digits.is_empty() {
        flush_digits(&mut digits, &mut out);
    }
    colloquial::fold(out)
}

thread_local! {
    /// Stop words are removed before this analyzer sees the text, so it only stems.
    static STEMMER: RefCell<TextAnalyzer> = RefCell::new(
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(Stemmer::new(Language::English))
            .build(),
    );
}

fn stem(word: &str) -> String {
    STEMMER.with(|analyzer| {
        let mut analyzer = analyzer.borrow_mut();
        let mut stream = analyzer.token_stream(word);
        let mut out = String::new();
        while stream.advance() {
            out.push_str(&stream.token().text);
        }
        out
    })
}

/// The index/query terms of `text`.
pub(crate) fn analyze(text: &str) -> Terms {
    let norm = normalize(text);
    let mut terms = Terms {
        sounds: crate::sequence::sounds(&norm),
        ..Terms::default()
    };
    let mut stems = Vec::new();
    // Default mode, not search mode: the parts of a long word are already in its bigrams, and
    // counting them again as words over-weights long words (measured on the AFQMC dev set).
    let mut jieba = tantivy_jieba::JiebaTokenizer::with_search_mode(false);
    for run in script_runs(&norm) {
        match run {
            Run::Cjk(run) => {
                let mut stream = jieba.token_stream(run);
                while stream.advance() {
                    let word = stream.token().text.trim();
                    if !word.is_empty() && !ZH_STOP.contains(&word) {
                        terms.words.push(word.to_string());
                    }
                }
                let chars: Vec<char> = run.chars().collect();
                for pair in chars.windows(2) {
                    terms.bigrams.push(pair.iter().collect());
                }
                terms.negated |= negated(&chars);
                for &c in &chars {
                    if !ZH_STOP_CHARS.contains(c) {
                        terms.unigrams.push(c.to_string());
                    }
                }
            }
            Run::Latin(word) => {
                if EN_STOP.contains(&word) {
                    continue;
                }
                let stemmed = stem(word);
                push_trigrams(word, &mut terms.trigrams);
                stems.push(stemmed.clone());
                terms.words.push(stemmed);
            }
        }
    }
    let padded = format!(" {norm} ");
    for group in synonyms::groups(stem) {
        let hit = group.zh.iter().any(|m| norm.contains(m))
            || group.en_words.iter().any(|m| stems.contains(m))
            || group.en_phrases.iter().any(|p| padded.contains(p.as_str()));
        if hit {
            terms.words.push(group.canonical.to_string());
        }
    }
    terms
}

/// Whether a Chinese run negates (A-not-A questions such as 能不能 are not negations).
fn negated(chars: &[char]) -> bool {
    chars.iter().enumerate().any(|(i, &c)| {
        let a_not_a = i > 0 && chars.get(i + 1) == Some(&chars[i - 1]);
        matches!(c, '不' | '没' | '无' | '未' | '别') && !a_not_a
    })
}

fn push_trigrams(word: &str, out: &mut Vec<String>) {
    if word.chars().count() < 3 || word.chars().all(|c| c.is_ascii_digit()) {
        return;
    }
    let chars: Vec<char> = std::iter::once('#')
        .chain(word.chars())
        .chain(std::iter::once('#'))
        .collect();
    for tri in chars.windows(3) {
        out.push(tri.iter().collect());
    }
}

enum Run<'a> {
    /// A maximal run of Chinese characters.
    Cjk(&'a str),
    /// One Latin/digit word.
    Latin(&'a str),
}

/// Splits normalised text into Chinese runs and Latin words (mixed queries such as
/// "iphone 15 退货" get both treatments).
fn script_runs(norm: &str) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    let mut start = None::<(usize, bool)>;
    for (i, c) in norm.char_indices() {
        let kind = if c == ' ' { None } else { Some(is_cjk(c)) };
        match (start, kind) {
            (Some((s, cjk)), Some(k)) if k == cjk => {
                let _ = s;
            }
            (Some((s, cjk)), _) => {
                runs.push(make_run(&norm[s..i], cjk));
                start = kind.map(|k| (i, k));
            }
            (None, Some(k)) => start = Some((i, k)),
            (None, None) => {}
        }
    }
    if let Some((s, cjk)) = start {
        runs.push(make_run(&norm[s..], cjk));
    }
    runs
}

fn make_run(text: &str, cjk: bool) -> Run<'_> {
    if cjk {
        Run::Cjk(text)
    } else {
        Run::Latin(text)
    }
}

#[cfg(test)]
mod tests;
