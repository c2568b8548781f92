//! What the order data is used for: the bot's answer to an entry marked
//! `needs = "order_status"`, and the agent's `orders_request`.

use std::sync::Arc;

use super::{Failure, Orders};
use crate::agent::AgentSession;
use crate::app::AppState;
use crate::protocol::{AgentServerFrame, Card, ErrorCode, ShopOrder};
use crate::session::Session;
use crate::store::AuditEntry;
use crate::telemetry::metric;

/// The bot's text for `entry`: for an entry about the customer's order and an identified
/// customer whose latest order the shop reports in time, that order's status; otherwise the
/// entry's answer as written.
pub async fn bot_text(
    orders: Option<&Orders>,
    session: &Session,
    entry: &faq_index::Entry,
) -> String {
    if entry.needs.as_deref() != Some("order_status") {
        return entry.answer.clone();
    }
    let asked = match (orders, session.identity()) {
        (Some(orders), Some(identity)) => match identity.shop_id.as_deref() {
            Some(shop_id) => Some(orders.recent(shop_id, &identity.customer).await),
            None => None,
        },
        _ => None,
    };
    let latest = match &asked {
        Some(Ok(list)) => list.first(),
        _ => None,
    };
    let source = if latest.is_some() { "live" } else { "general" };
    metrics::counter!(metric::ORDER_ANSWERS_TOTAL, "source" => source).increment(1);
    match latest {
        Some(order) => status_text(order, &entry.lang),
        None => entry.answer.clone(),
    }
}

/// The latest order in words, in the entry's language.
fn status_text(order: &ShopOrder, lang: &str) -> String {
    let Card::Order {
        order_no,
        status,
        items,
        ..
    } = &order.card
    else {
        return String::new();
    };
    let first = items.first().map(|i| i.title.as_str());
    if lang == "zh" {
        let what = match (first, items.len()) {
            (Some(t), 1) => format!("（{t}）"),
            (Some(t), n) => format!("（{t}等{n}件商品）"),
            _ => String::new(),
        };
        let news = order
            .logistics
            .as_deref()
            .map(|l| format!("最新物流：{l}。"))
            .unwrap_or_default();
        format!(
            "亲，您最近的订单 {order_no}{what}当前状态：{status}。{news}\
             查看全部订单请打开“我的订单”。"
        )
    } else {
        let what = match (first, items.len()) {
            (Some(t), 1) => format!(" ({t})"),
            (Some(t), n) => format!(" ({t} and {} more)", n - 1),
            _ => String::new(),
        };
        let news = order
            .logistics
            .as_deref()
            .map(|l| format!(" Latest tracking: {l}."))
            .unwrap_or_default();
        format!(
            "Your latest order {order_no}{what} is: {status}.{news} \
             You can see all your orders under \"My Orders\"."
        )
    }
}

/// `orders_request` on the agent's node: the chat's customer's recent orders, masked; the
/// read is audited first, like a history read. Runs as a task of its own, so a slow shop does
/// not hold up the agent's other frames.
pub async fn agent_request(app: AppState, agent: Arc<AgentSession>, session: String) {
    if agent.customer_node(&session).is_none() {
        let message = format!("session {session} is not one of your chats");
        return agent.error(ErrorCode::NotYourChat, message, None);
    }
    let answer = |reason: Option<&str>, orders: Vec<ShopOrder>| AgentServerFrame::Orders {
        session: session.clone(),
        available: reason.is_none(),
        reason: reason.map(str::to_string),
        orders,
    };
    let Some(orders) = app.orders.as_deref() else {
        agent
            .outbox
            .emit(&answer(Some("not_configured"), Vec::new()));
        return;
    };
    let Some((shop_id, customer)) = whose(&app, &session).await else {
        agent
            .outbox
            .emit(&answer(Some("not_identified"), Vec::new()));
        return;
    };
    if let Some(store) = app.store.as_ref() {
        let audit = AuditEntry::agent_read(agent.id(), "read_orders", &session, String::new());
        if let Err(err) = store.audit(&audit).await {
            tracing::error!(error = %err, "cannot audit an order read; refused");
            return agent.error(ErrorCode::Internal, "orders unavailable", None);
        }
    }
    let frame = match orders.recent(&shop_id, &customer).await {
        Ok(list) => answer(None, list.as_ref().clone()),
        Err(Failure::Timeout) => answer(Some("timeout"), Vec::new()),
        Err(_) => answer(Some("unavailable"), Vec::new()),
    };
    agent.outbox.emit(&frame.masked());
}

/// The shop's id and the hash of `session`'s customer: from the session when this node
/// holds it, else from the store's sealed link of the chat.
async fn whose(app: &AppState, session: &str) -> Option<(String, String)> {
    if let Some(identity) = app
        .sessions
        .get(session)
        .and_then(|s| s.identity().cloned())
    {
        return identity.shop_id.map(|id| (id, identity.customer));
    }
    match app.store.as_ref()?.customer_link(session).await {
        Ok(Some((customer, Some(shop_id)))) => Some((shop_id, customer)),
        Ok(_) => None,
        Err(err) => {
            tracing::error!(error = %err, "cannot read whose chat this is");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OrderItem;

    fn order(items: &[&str], logistics: Option<&str>) -> ShopOrder {
        ShopOrder {
            card: Card::Order {
                order_no: "E20261111".into(),
                status: "已发货".into(),
                items: items
                    .iter()
                    .map(|t| OrderItem {
                        title: t.to_string(),
                        sku: None,
                        quantity: Some(1),
                        price: None,
                        image_url: None,
                    })
                    .collect(),
                amount: None,
            },
            placed_at: None,
            logistics: logistics.map(str::to_string),
        }
    }

    #[test]
    fn the_status_reads_naturally_in_both_languages() {
        let zh = status_text(&order(&["保温杯", "杯套"], Some("顺丰 已到达上海")), "zh");
        assert!(
            zh.contains("E20261111") && zh.contains("保温杯等2件商品"),
            "{zh}"
        );
        assert!(zh.contains("当前状态：已发货") && zh.contains("最新物流：顺丰 已到达上海"));
        let en = status_text(&order(&["cup"], None), "en");
        assert!(
            en.starts_with("Your latest order E20261111 (cup) is: "),
            "{en}"
        );
        assert!(!en.contains("tracking"), "{en}");
        let bare = status_text(&order(&[], None), "en");
        assert!(
            bare.starts_with("Your latest order E20261111 is: "),
            "{bare}"
        );
    }
}
