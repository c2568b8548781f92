//! Masking of personal data toward agents and logs (PIPL): mainland mobile numbers
//! (138****5678), resident ID numbers, bank card numbers and street addresses, in Chinese and
//! English text. The unmasked text stays only with the session (and the encrypted store).

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Captures, Regex};

struct Patterns {
    id_card: Regex,
    bank_card: Regex,
    phone: Regex,
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
            // 18-character resident ID: 6-digit area, birth date, 3 digits, check digit or X.
            id_card: re(r"(?i)(^|[^0-9])([1-9][0-9]{5})((?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3})([0-9x])($|[^0-9])"),
            // 16-19 digit card numbers, possibly grouped by spaces or dashes.
            bank_card: re(r"(^|[^0-9])((?:[0-9][ -]?){15,18}[0-9])($|[^0-9])"),
            // Mainland mobile: 1[3-9]x xxxx xxxx, optionally +86 and spaces or dashes.
            phone: re(r"(^|[^0-9])((?:\+?86[ -]?)?1[3-9][0-9])[ -]?([0-9]{4})[ -]?([0-9]{4})($|[^0-9])"),
            // 省/市/区/路/街/号 style street address: keep the city-level part, hide the rest.
            address_zh: re(r"([\p{Han}]{2,}(?:路|街|道|巷|弄|胡同|大道))([\p{Han}0-9A-Za-z\-]*?[0-9]+\s*(?:号|栋|幢|单元|室|楼)[\p{Han}0-9A-Za-z\-号栋幢单元室楼]*)"),
            address_en: re(r"(?i)\b[0-9]{1,5}\s+(?:[a-z]+\s){1,4}(?:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr)\b\.?"),
        }
    })
}

/// Returns `text` with personal data masked; borrows when there is nothing to mask.
pub fn mask_text(text: &str) -> Cow<'_, str> {
    let p = patterns();
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    // Longest patterns first, so an ID number is not taken for a phone number.
    if p.id_card.is_match(&out) {
        let masked = p.id_card.replace_all(&out, |c: &Captures| {
            format!("{}{}********{}{}{}", &c[1], &c[2], &c[3][8..], &c[4], &c[5])
        });
        out = Cow::Owned(masked.into_owned());
    }
    if p.bank_card.is_match(&out) {
        let masked = p.bank_card.replace_all(&out, |c: &Captures| {
            let digits: String = c[2].chars().filter(char::is_ascii_digit).collect();
            let last4 = &digits[digits.len().saturating_sub(4)..];
            format!("{}**** **** **** {}{}", &c[1], last4, &c[3])
        });
        out = Cow::Owned(masked.into_owned());
    }
    if p.phone.is_match(&out) {
        let masked = p.phone.replace_all(&out, |c: &Captures| {
            format!("{}{}****{}{}", &c[1], &c[2], &c[4], &c[5])
        });
        out = Cow::Owned(masked.into_owned());
    }
    if p.address_zh.is_match(&out) {
        let masked = p
            .address_zh
            .replace_all(&out, |c: &Captures| format!("{}****", &c[1]));
        out = Cow::Owned(masked.into_owned());
    }
    if p.address_en.is_match(&out) {
        out = Cow::Owned(p.address_en.replace_all(&out, "[address]").into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
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
}
