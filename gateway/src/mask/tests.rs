//! The masking rules on plain input (the output format agents know), on input written to get
//! around them, and property tests over generated variants.

use proptest::prelude::*;

use super::mask_text;

#[test]
fn masks_mobile_numbers_in_chinese_and_english() {
    assert_eq!(
        mask_text("我的手机号是13812345678，麻烦回电"),
        "我的手机号是138****5678，麻烦回电"
    );
    assert_eq!(
        mask_text("call me at +86 138-1234-5678 please"),
        "call me at +86 138****5678 please"
    );
    assert_eq!(mask_text("电话 139 1234 5678"), "电话 139****5678");
    assert_eq!(mask_text("8613812345678"), "86138****5678");
}

#[test]
fn leaves_order_numbers_and_prices_alone() {
    assert_eq!(
        mask_text("订单号 20241111 价格 299 元"),
        "订单号 20241111 价格 299 元"
    );
    assert_eq!(mask_text("hello"), "hello");
    // 12 digits starting with 1 is not a phone number.
    assert_eq!(mask_text("单号123456789012"), "单号123456789012");
    assert_eq!(mask_text("买 3 件，共 299.00 元"), "买 3 件，共 299.00 元");
}

#[test]
fn masks_id_numbers_and_bank_cards() {
    assert_eq!(
        mask_text("身份证110101199003071234"),
        "身份证110101********1234"
    );
    assert_eq!(
        mask_text("ID 11010119900307123X ok"),
        "ID 110101********123X ok"
    );
    assert_eq!(
        mask_text("退款到卡 6222 0212 3456 7890 123"),
        "退款到卡 **** **** **** 0123"
    );
    assert_eq!(
        mask_text("card 6222021234567890"),
        "card **** **** **** 7890"
    );
}

#[test]
fn masks_street_addresses() {
    assert_eq!(
        mask_text("寄到北京市朝阳区建国路88号院3栋1201"),
        "寄到北京市朝阳区建国路****"
    );
    assert_eq!(
        mask_text("ship to 221 Baker Street, London"),
        "ship to [address], London"
    );
}

#[test]
fn full_width_zero_width_and_separators_do_not_get_past() {
    assert_eq!(mask_text("手机１３８１２３４５６７８"), "手机138****5678");
    assert_eq!(
        mask_text("手机1\u{200b}3\u{200d}8\u{feff}12345678呢"),
        "手机138****5678呢"
    );
    assert_eq!(mask_text("电话138.1234.5678"), "电话138****5678");
    assert_eq!(mask_text("1_3_8_1_2_3_4_5_6_7_8"), "138****5678");
    assert_eq!(mask_text("138·1234·5678"), "138****5678");
    assert_eq!(
        mask_text("电话 １３８－１２３４－５６７８。"),
        "电话 138****5678。"
    );
    assert_eq!(
        mask_text("身份证 110101 19900307 123x"),
        "身份证 110101********123X"
    );
    assert_eq!(
        mask_text("卡号６２２２．０２１２．３４５６．７８９０"),
        "卡号**** **** **** 7890"
    );
    assert_eq!(
        mask_text("寄到北京市朝阳区建国\u{200b}路８８号"),
        "寄到北京市朝阳区建国\u{200b}路****"
    );
    // Two numbers side by side are two numbers.
    assert_eq!(
        mask_text("13812345678,13912345678"),
        "138****5678,139****5678"
    );
}

#[test]
fn a_card_read_greedily_does_not_uncover_a_phone_after_it() {
    // Found by the `masker` fuzz target: twelve digits in front made `…1381` a card, and the
    // rest of the phone number after it was never looked at.
    let masked = mask_text("000000000000 1381 2345678");
    assert!(!digits_of(&masked).contains("2345678"), "{masked}");
    assert_eq!(masked, "**** **** **** 1381");
}

#[test]
fn masking_masked_text_changes_nothing() {
    // Found by the `masker` fuzz target: the last four of a masked phone and the digits after
    // it read as a card on the next round (the frames toward agents mask again).
    for text in [
        "13812345678 1234567890123",
        "000000000000 1381 2345678",
        "卡号 6222 0212 34562 3456 7890 1 7890 123",
        "卡 6222021234567890 电话 13812345678",
        "我的手机号是13812345678，麻烦回电",
    ] {
        let once = mask_text(text);
        assert_eq!(mask_text(&once), once, "{text}");
    }
    assert_eq!(
        mask_text("13812345678 1234567890123"),
        "138******** **** **** 0123"
    );
}

/// Digits of `s` after normalisation, in order (what an agent could read off the text).
fn digits_of(s: &str) -> String {
    super::normal::Normal::new(s)
        .text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'X' || *c == 'x')
        .collect()
}

/// Writes `digits` the way someone dodging a filter might: each digit full-width or not,
/// with zero-width characters or separators between some of them.
fn disguise(digits: &str, styles: &[u8]) -> String {
    const SEPARATORS: &[&str] = &[
        " ", ".", "-", "_", "·", "\u{3000}", " - ", "／", "\u{200b}", "\u{200d}", "\u{feff}",
        "\u{2060}", "－", "．",
    ];
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        let style = styles.get(i).copied().unwrap_or(0);
        match c.to_digit(10) {
            Some(d) if style % 2 == 1 => {
                out.push(char::from_u32(0xFF10 + d).unwrap_or(c));
            }
            _ => out.push(c),
        }
        if i + 1 < digits.chars().count() && style >= 100 {
            out.push_str(SEPARATORS[usize::from(style) % SEPARATORS.len()]);
        }
    }
    out
}

/// Text around a number, without digits of its own.
fn around() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "我的手机是",
        "电话：",
        "call me ",
        "号码",
        "卡号 ",
        "身份证",
        "ok ",
        "，谢谢",
        "\u{200b}",
    ])
    .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn disguised_phones_never_show_their_middle_digits(
        second in 3u8..=9, rest in "[0-9]{9}", styles in prop::collection::vec(0u8..200, 11),
        before in around(), after in around(),
    ) {
        let phone = format!("1{second}{rest}");
        let text = format!("{before}{}{after}", disguise(&phone, &styles));
        let masked = mask_text(&text);
        let seen = digits_of(&masked);
        let visible = format!("{}{}", &phone[..3], &phone[7..]);
        // The first three and last four can spell the middle four by chance (19595909000:
        // "195" + "9000" holds "9590"); exactly those seven digits showing is the real check.
        if !visible.contains(&phone[3..7]) {
            prop_assert!(!seen.contains(&phone[3..7]), "{text:?} -> {masked:?}");
        }
        prop_assert_eq!(seen, visible);
    }

    #[test]
    fn disguised_id_numbers_never_show_the_birth_date(
        area in 100_000u32..999_999, year in 1950u32..2020, month in 1u32..=12, day in 1u32..=28,
        seq in 0u32..999, check in "[0-9X]",
        styles in prop::collection::vec(0u8..200, 18), before in around(), after in around(),
    ) {
        let id = format!("{area}{year}{month:02}{day:02}{seq:03}{check}");
        let text = format!("{before}{}{after}", disguise(&id, &styles));
        let masked = mask_text(&text);
        let seen = digits_of(&masked);
        prop_assert_eq!(seen, format!("{}{}", &id[..6], &id[14..]), "{:?} -> {:?}", text, masked);
    }

    #[test]
    fn disguised_bank_cards_show_only_the_last_four(
        card in "[1-9][0-9]{15,18}", styles in prop::collection::vec(0u8..200, 19),
        before in around(), after in around(),
    ) {
        // An 18-digit card that reads as an ID number is masked as one.
        prop_assume!(super::digits::classify(&card) == Some(super::digits::Kind::BankCard));
        let text = format!("{before}{}{after}", disguise(&card, &styles));
        let masked = mask_text(&text);
        let seen = digits_of(&masked);
        prop_assert_eq!(seen, card[card.len() - 4..].to_string(), "{:?} -> {:?}", text, masked);
    }

    #[test]
    fn masking_is_idempotent(text in "[0-9 .*+\\-８１３\u{200b}a-z路号]{0,60}") {
        let once = mask_text(&text).into_owned();
        prop_assert_eq!(mask_text(&once), once.as_str(), "{:?}", text);
    }

    #[test]
    fn text_without_numbers_comes_back_unchanged(text in "[a-z\u{4e00}-\u{4e50} ，。]{0,40}") {
        prop_assert_eq!(mask_text(&text), text.as_str());
    }
}
