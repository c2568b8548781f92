//! Colloquial and misspelt forms of common Chinese words, folded onto the standard form.
//!
//! Customers type fast and informally: 啥/神马 for 什么, 咋 for 怎么, 木有 for 没有, 己经 for
//! 已经, 帐单 for 账单. These are spellings of one word, not synonyms, so they are folded in the
//! text itself (every signal then sees the same characters), after Traditional → Simplified.

/// (variant, standard form). Longer variants first where one contains another.
const FOLDS: &[(&str, &str)] = &[
    ("神马", "什么"),
    ("甚么", "什么"),
    ("啥", "什么"),
    ("咋", "怎么"),
    ("木有", "没有"),
    ("己经", "已经"),
    ("帐", "账"),
    ("登陆", "登录"),
];

/// `text` with every variant replaced by its standard form.
pub(super) fn fold(text: String) -> String {
    if !FOLDS.iter().any(|(v, _)| text.contains(v)) {
        return text;
    }
    FOLDS.iter().fold(
        text,
        |t, (v, s)| if t.contains(v) { t.replace(v, s) } else { t },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_fold_and_other_text_is_untouched() {
        assert_eq!(fold("借呗啥时候恢复".into()), "借呗什么时候恢复");
        assert_eq!(fold("咋查帐单".into()), "怎么查账单");
        assert_eq!(fold("怎么申请退款".into()), "怎么申请退款");
    }
}
