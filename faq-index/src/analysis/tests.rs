use super::*;

fn has(list: &[String], term: &str) -> bool {
    list.iter().any(|t| t == term)
}

#[test]
fn chinese_gets_words_bigrams_and_unigrams() {
    let t = analyze("怎么申请退款");
    assert!(has(&t.words, "退款"), "{t:?}");
    assert!(has(&t.words, "申请"), "{t:?}");
    assert!(has(&t.bigrams, "退款") && has(&t.bigrams, "申请"), "{t:?}");
    assert!(has(&t.unigrams, "退"), "{t:?}");
    assert!(t.trigrams.is_empty());
}

#[test]
fn word_order_does_not_change_the_terms() {
    // The phrase trap: both orders must yield the same words, so a bag-of-terms query matches.
    let mut a = analyze("退款怎么申请").words;
    let mut b = analyze("怎么申请退款").words;
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn english_is_lowercased_stemmed_and_stopped() {
    let t = analyze("I want to CANCEL my Orders");
    assert!(has(&t.words, "cancel"), "{t:?}");
    assert!(has(&t.words, "order"), "{t:?}");
    assert!(!has(&t.words, "my") && !has(&t.words, "i") && !has(&t.words, "to"));
    assert!(has(&t.trigrams, "#ca") && has(&t.trigrams, "rs#"), "{t:?}");
}

#[test]
fn mixed_queries_get_both_treatments() {
    let t = analyze("iPhone退货refunds");
    assert!(has(&t.words, "iphon"), "{t:?}");
    assert!(has(&t.words, "退货"), "{t:?}");
    assert!(has(&t.words, "refund"), "{t:?}");
}

#[test]
fn traditional_folds_to_simplified() {
    assert_eq!(analyze("退貨運費").words, analyze("退货运费").words);
    assert_eq!(analyze("發票").bigrams, vec!["发票".to_string()]);
}

#[test]
fn full_width_folds_to_half_width() {
    assert_eq!(normalize("ＲＥＦＵＮＤ，退款？").trim(), "refund 退款");
    assert_eq!(analyze("ＯＲＤＥＲ").words, analyze("order").words);
}

#[test]
fn order_numbers_are_noise_but_small_numbers_stay() {
    let n = normalize("order732201349959 and 7天");
    assert!(!n.contains("732"), "{n}");
    assert!(n.contains("order") && n.contains(" 7 "), "{n}");
    assert!(!normalize("还***元").contains('*'));
}

#[test]
fn synonyms_add_a_shared_canonical_word() {
    for text in [
        "我要退钱",
        "怎么退款",
        "退貨",
        "I want my money back",
        "reimbursement",
    ] {
        assert!(has(&analyze(text).words, "~refund"), "{text}");
    }
    assert!(has(&analyze("快递到哪了").words, "~logistics"));
    assert!(has(&analyze("包裹").words, "~logistics"));
}

#[test]
fn empty_and_punctuation_only_texts_have_no_terms() {
    assert!(analyze("").is_empty());
    assert!(analyze("？！…  ").is_empty());
    assert!(analyze("the of to").is_empty());
}

#[test]
fn negation_is_detected_but_a_not_a_questions_are_not_negations() {
    assert!(analyze("花呗不能用了").negated);
    assert!(analyze("还款没到账").negated);
    assert!(!analyze("花呗能不能分期").negated);
    assert!(!analyze("花呗可以分期吗").negated);
}
