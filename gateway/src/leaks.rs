//! Leak interception: an agent message that would take the customer off the platform (a phone
//! number, a WeChat or QQ id, a payment outside the platform) is not delivered. The rules are
//! regular expressions in `[leaks]`, compiled once at start (a bad one stops the gateway,
//! naming its key), matched on the normalised text ([`crate::mask::normalise`]).

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

/// Compiled size limit per rule: a rule is a few alternatives, not a program.
const RULE_SIZE_LIMIT: usize = 1 << 20;
/// At most this many rules (each message is matched against all of them).
pub const MAX_RULES: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakSettings {
    pub rules: Vec<LeakRule>,
    /// The rules compiled, filled in by [`LeakSettings::compile`] when the settings load.
    #[serde(skip)]
    compiled: Vec<(String, Regex)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakRule {
    /// Named in the agent's `blocked_content` error, the audit log and the metric.
    pub name: String,
    pub pattern: String,
}

/// A rule that does not compile: the key it is at, and why.
#[derive(Debug)]
pub struct BadRule {
    pub key: String,
    pub message: String,
}

impl LeakSettings {
    /// Compiles every rule; the first bad one is reported with its key.
    pub fn compile(&mut self) -> Result<(), BadRule> {
        if self.rules.len() > MAX_RULES {
            return Err(BadRule {
                key: "leaks.rules".into(),
                message: format!("{} rules, at most {MAX_RULES}", self.rules.len()),
            });
        }
        let mut compiled = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let name_ok = !rule.name.is_empty()
                && rule.name.len() <= 32
                && rule
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(BadRule {
                    key: format!("leaks.rules[{i}].name"),
                    message: "names are 1-32 letters, digits, `_` or `-`".into(),
                });
            }
            let re = RegexBuilder::new(&rule.pattern)
                .size_limit(RULE_SIZE_LIMIT)
                .build()
                .map_err(|e| BadRule {
                    key: format!("leaks.rules[{i}].pattern"),
                    message: format!("rule `{}` is not a valid regex: {e}", rule.name),
                })?;
            compiled.push((rule.name.clone(), re));
        }
        self.compiled = compiled;
        Ok(())
    }

    /// The name of the first rule `text` breaks, if any.
    pub fn check(&self, text: &str) -> Option<&str> {
        if self.compiled.is_empty() {
            return None;
        }
        let normal = crate::mask::normalise(text);
        self.compiled
            .iter()
            .find(|(_, re)| re.is_match(&normal))
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_rules_catch_the_usual_ways_off_the_platform() {
        let leaks = crate::Settings::embedded().leaks;
        for (text, rule) in [
            ("加我微信 abc123", "wechat"),
            ("vx: kefu_2024", "wechat"),
            ("ｖｘ：ｋｅｆｕ２０２４", "wechat"),
            ("微\u{200b}信号 wang_xiao", "wechat"),
            ("QQ 12345678", "qq"),
            ("add me on WeChat please", "wechat"),
            ("wechat: wang_xiao", "wechat"),
            ("扣扣：87654321", "qq"),
            ("直接转账到支付宝就行", "payment"),
            ("我们私下付款吧", "payment"),
            ("打我电话 138 1234 5678", "phone"),
            ("打我电话１３８１２３４５６７８", "phone"),
        ] {
            assert_eq!(leaks.check(text), Some(rule), "{text}");
        }
        for fine in [
            "您好，我来帮您看看订单 20241111123",
            "退款会原路退回到支付宝，3-5 个工作日到账",
            "请在订单页面点击申请售后",
            "Please use the in-app chat, thanks",
            "WeChat payment is supported; the verification code was sent",
            "客服热线 400-820-8820",
        ] {
            assert_eq!(leaks.check(fine), None, "{fine}");
        }
    }
}
