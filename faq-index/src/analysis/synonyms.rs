//! E-commerce synonym groups.
//!
//! Customers name the same thing many ways (退货/退款/退钱, 快递/物流/包裹, refund/reimbursement/
//! money back). Every member of a group adds the group's canonical token (`~refund`) to the words of
//! the text, at index and at query time. The original words stay, so an exact wording still scores
//! above a synonym, and a synonym match is worth one shared word instead of nothing.
//!
//! Chinese members are matched as substrings of the normalised text (jieba may split 退钱 into
//! 退/钱); English members as stemmed words, or as phrases when they contain a space.

use std::sync::OnceLock;

/// (canonical, Chinese members, English members). English members are stemmed at first use.
const GROUPS: &[(&str, &[&str], &[&str])] = &[
    (
        "~refund",
        &["退款", "退钱", "退货", "退费", "返还", "退回"],
        &[
            "refund",
            "reimbursement",
            "reimburse",
            "rebate",
            "money back",
            "compensation",
        ],
    ),
    (
        "~return",
        &["退货", "退换", "换货", "寄回", "退回"],
        &["return", "exchange"],
    ),
    (
        "~logistics",
        &[
            "快递", "物流", "包裹", "运单", "发货", "配送", "送货", "邮寄",
        ],
        &[
            "delivery", "deliver", "shipping", "shipment", "ship", "parcel", "package", "courier",
        ],
    ),
    ("~order", &["订单", "单子", "下单"], &["order", "purchase"]),
    (
        "~invoice",
        &["发票", "开票", "收据"],
        &["invoice", "bill", "receipt"],
    ),
    (
        "~cancel",
        &["取消", "撤销"],
        &["cancel", "cancellation", "terminate", "termination"],
    ),
    (
        "~change",
        &["修改", "更改", "变更", "改成", "更换"],
        &["change", "modify", "edit", "update", "alter"],
    ),
    ("~address", &["地址"], &["address"]),
    (
        "~pay",
        &["付款", "支付", "付钱", "买单"],
        &["pay", "payment"],
    ),
    (
        "~human",
        &["人工", "真人", "客服", "转人工"],
        &[
            "human",
            "agent",
            "person",
            "representative",
            "operator",
            "someone",
        ],
    ),
    (
        "~complaint",
        &["投诉", "举报", "差评"],
        &["complaint", "complain", "claim"],
    ),
    (
        "~account",
        &["账号", "账户", "帐号", "帐户"],
        &["account", "profile"],
    ),
    (
        "~password",
        &["密码"],
        &["password", "pwd", "pin", "passcode"],
    ),
    (
        "~fee",
        &["费用", "运费", "手续费", "收费"],
        &["fee", "charge", "penalty", "cost"],
    ),
    (
        "~coupon",
        &["优惠券", "红包", "折扣", "优惠"],
        &["coupon", "voucher", "discount", "promo"],
    ),
    (
        "~feedback",
        &["评价", "反馈", "意见"],
        &["feedback", "review", "opinion"],
    ),
    (
        "~signup",
        &["注册"],
        &["signup", "register", "registration", "sign up"],
    ),
    ("~contact", &["联系", "电话"], &["contact", "call", "phone"]),
    (
        "~track",
        &["查询", "进度", "到哪"],
        &["track", "status", "locate", "eta"],
    ),
    (
        "~arrive",
        &["到货", "到达", "多久到", "什么时候到", "送到"],
        &["arrive", "arrival"],
    ),
    (
        "~broken",
        &["坏了", "破损", "质量问题", "瑕疵", "损坏"],
        &["broken", "damaged", "defective", "faulty"],
    ),
    ("~price", &["价格", "多少钱", "价钱"], &["price"]),
    (
        "~stock",
        &["有货", "库存", "缺货", "补货", "现货"],
        &["stock"],
    ),
    ("~size", &["尺码", "尺寸", "码数"], &["size"]),
    ("~repay", &["还款", "还钱", "还清"], &["repay", "repayment"]),
    (
        "~overdue",
        &["逾期", "晚还", "延期", "超期"],
        &["overdue", "late"],
    ),
    ("~limit", &["额度", "限额"], &["limit"]),
    ("~interest", &["利息", "利率"], &["interest"]),
    ("~installment", &["分期"], &["installment", "instalment"]),
    (
        "~activate",
        &["开通", "激活", "开启"],
        &["activate", "enable"],
    ),
];

/// General Chinese customer-service phrasings of the same intent (how/why/can, does not work,
/// raise/lower, pay off, close, disappear, restore…), independent of the shop domain.
const ZH_GENERAL: &[(&str, &[&str], &[&str])] = &[
    ("~how", &["怎么", "如何", "怎样", "咋"], &[]),
    (
        "~why",
        &[
            "为什么",
            "为啥",
            "怎么回事",
            "什么原因",
            "原因",
            "为何",
            "怎么会",
        ],
        &[],
    ),
    (
        "~can",
        &[
            "可以",
            "能否",
            "能不能",
            "可不可以",
            "可否",
            "能够",
            "行不行",
        ],
        &[],
    ),
    (
        "~broken_use",
        &[
            "用不了",
            "不能用",
            "无法使用",
            "没法用",
            "不可用",
            "没办法用",
            "使用不了",
            "不能使用",
            "付不了",
            "支付不了",
            "无法支付",
            "不能支付",
            "不能付款",
            "无法付款",
            "付款失败",
            "支付失败",
            "不可以用",
        ],
        &[],
    ),
    (
        "~when",
        &[
            "什么时候",
            "多久",
            "多长时间",
            "何时",
            "几天",
            "几时",
            "哪天",
            "几号",
        ],
        &[],
    ),
    (
        "~raise",
        &["提高", "提升", "增加", "提额", "调高", "涨"],
        &[],
    ),
    (
        "~lower",
        &["降低", "下降", "降额", "减少", "变少", "调低", "降了"],
        &[],
    ),
    (
        "~payoff",
        &["还清", "还完", "结清", "全部还", "一次性还"],
        &[],
    ),
    (
        "~close",
        &["关闭", "关掉", "注销", "停用", "取消", "关了", "停掉"],
        &[],
    ),
    (
        "~check",
        &["查看", "查询", "在哪看", "怎么看", "查一下", "查不到"],
        &[],
    ),
    (
        "~gone",
        &[
            "不见了",
            "没有了",
            "消失",
            "找不到",
            "没了",
            "不显示",
            "看不到",
        ],
        &[],
    ),
    ("~restore", &["恢复", "重新开通", "再次开通", "重新开"], &[]),
    (
        "~deduct",
        &["扣款", "扣钱", "扣费", "扣了", "自动还款"],
        &[],
    ),
    ("~phone", &["手机号", "电话号码", "号码"], &[]),
    ("~bind", &["绑定", "关联", "绑卡"], &[]),
    ("~unbind", &["解绑", "解除绑定", "取消绑定"], &[]),
    ("~bankcard", &["银行卡", "储蓄卡", "借记卡"], &[]),
    ("~bill", &["账单", "月结"], &[]),
    ("~early", &["提前还", "提前结清"], &[]),
    ("~credited", &["到账", "入账", "进账", "收到"], &[]),
    ("~borrow", &["借钱", "借款", "贷款"], &[]),
    ("~buy", &["购买", "买东西", "购物", "消费"], &[]),
    ("~transfer", &["转账", "转钱", "汇款", "打钱"], &[]),
    ("~verify", &["认证", "验证", "实名", "授权"], &[]),
    ("~delete", &["删除", "删掉", "清除", "清空"], &[]),
    ("~record", &["记录", "明细", "流水"], &[]),
    ("~free", &["免费", "免息", "不收费"], &[]),
    (
        "~cannot_open",
        &["开通不了", "开不了", "无法开通", "不能开通", "开通失败"],
        &[],
    ),
    ("~login", &["登录", "登入"], &[]),
];

/// A synonym group after stemming.
pub(super) struct Group {
    pub canonical: &'static str,
    pub zh: &'static [&'static str],
    /// Stemmed single-word members.
    pub en_words: Vec<String>,
    /// Multi-word members, matched on the normalised text padded with spaces.
    pub en_phrases: Vec<String>,
}

/// The groups, with English members stemmed by `stem`.
pub(super) fn groups(stem: impl Fn(&str) -> String) -> &'static [Group] {
    static GROUPS_CELL: OnceLock<Vec<Group>> = OnceLock::new();
    GROUPS_CELL.get_or_init(|| {
        GROUPS
            .iter()
            .chain(ZH_GENERAL)
            .map(|&(canonical, zh, en)| Group {
                canonical,
                zh,
                en_words: en
                    .iter()
                    .filter(|w| !w.contains(' '))
                    .map(|w| stem(w))
                    .collect(),
                en_phrases: en
                    .iter()
                    .filter(|w| w.contains(' '))
                    .map(|w| format!(" {w} "))
                    .collect(),
            })
            .collect()
    })
}
