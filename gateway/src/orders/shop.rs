//! The shop's side of the order lookup: how a request is signed and what an answer looks like.
//!
//! Request: `GET {orders_url}?customer=SUB` with
//! - `X-Kefu-Timestamp`: Unix seconds, and
//! - `X-Kefu-Signature`: `v1=` and the lowercase hex HMAC-SHA256, keyed with the shared
//!   secret, of `"{timestamp}\nGET\n{path}?{query}"` (the path and query exactly as sent).
//!
//! The shop checks the signature and refuses a timestamp far from its clock (a replayed
//! request), so only the gateway can read a customer's orders through it.
//!
//! Answer: `200` with `{"orders":[…]}` (or a bare array), newest first, each
//! `{"order_no", "status", "items":[{"title","sku","quantity","price","image_url"}],
//! "amount", "placed_at", "logistics"}`; other fields are ignored. An order that breaks the
//! card rules (lengths, http(s) links) is left out, not the whole answer.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::Failure;
use crate::protocol::{text_or_number, Card, OrderItem, ShopOrder};
use crate::redact::Secret;

pub const TIMESTAMP_HEADER: &str = "x-kefu-timestamp";
pub const SIGNATURE_HEADER: &str = "x-kefu-signature";

/// Largest answer read; a larger one is a bad answer (the shop lists recent orders only).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Orders kept of an answer.
const MAX_ORDERS: usize = 10;
/// Longest `placed_at` / `logistics` kept; longer ones are cut at a character boundary.
const MAX_PLACED_AT: usize = 40;
const MAX_LOGISTICS: usize = 300;

/// The `X-Kefu-Signature` value for a request to `path_and_query` at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, path_and_query: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        // HMAC takes keys of any length; kept total rather than panicking.
        return String::new();
    };
    mac.update(format!("{timestamp}\nGET\n{path_and_query}").as_bytes());
    format!(
        "v1={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

/// Asks the endpoint for `shop_id`'s orders (no timeout here: the caller bounds it).
pub(super) async fn request(
    client: &reqwest::Client,
    base: &reqwest::Url,
    secret: &Secret,
    shop_id: &str,
) -> Result<Vec<ShopOrder>, Failure> {
    let mut url = base.clone();
    url.query_pairs_mut().append_pair("customer", shop_id);
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let timestamp = crate::session::now_ms() / 1000;
    let signed = signature(secret.expose().as_bytes(), timestamp, &path_and_query);
    let mut response = client
        .get(url)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signed)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                Failure::Timeout
            } else {
                Failure::Error
            }
        })?;
    if !response.status().is_success() {
        return Err(Failure::Refused);
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(Failure::BadAnswer);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Error
        }
    })? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Failure::BadAnswer);
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Wrapped { orders: Vec<serde_json::Value> },
    Bare(Vec<serde_json::Value>),
}

#[derive(Deserialize)]
struct WireOrder {
    order_no: String,
    status: String,
    #[serde(default)]
    items: Vec<WireItem>,
    #[serde(default, deserialize_with = "text_or_number")]
    amount: Option<String>,
    #[serde(default)]
    placed_at: Option<String>,
    #[serde(default)]
    logistics: Option<String>,
}

#[derive(Deserialize)]
struct WireItem {
    title: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    quantity: Option<u32>,
    #[serde(default, deserialize_with = "text_or_number")]
    price: Option<String>,
    #[serde(default)]
    image_url: Option<String>,
}

/// The orders of an answer body; orders that do not fit the card rules are left out.
pub(super) fn parse(body: &[u8]) -> Result<Vec<ShopOrder>, Failure> {
    let orders = match serde_json::from_slice::<Answer>(body) {
        Ok(Answer::Wrapped { orders }) | Ok(Answer::Bare(orders)) => orders,
        Err(_) => return Err(Failure::BadAnswer),
    };
    Ok(orders
        .into_iter()
        .filter_map(|v| serde_json::from_value::<WireOrder>(v).ok())
        .filter_map(to_order)
        .take(MAX_ORDERS)
        .collect())
}

fn to_order(wire: WireOrder) -> Option<ShopOrder> {
    let card = Card::Order {
        order_no: wire.order_no.trim().to_string(),
        status: wire.status.trim().to_string(),
        items: wire
            .items
            .into_iter()
            .map(|i| OrderItem {
                title: i.title,
                sku: i.sku,
                quantity: i.quantity,
                price: i.price,
                image_url: i.image_url.filter(|u| !u.is_empty()),
            })
            .collect(),
        amount: wire.amount,
    };
    card.validate().ok()?;
    let cut = |v: Option<String>, max: usize| {
        v.map(|s| s.trim().chars().take(max).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    Some(ShopOrder {
        card,
        placed_at: cut(wire.placed_at, MAX_PLACED_AT),
        logistics: cut(wire.logistics, MAX_LOGISTICS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_in_both_shapes_and_bad_orders_are_left_out() {
        let wrapped = br#"{"orders":[{"order_no":"E1","status":"shipped","amount":59,"extra":1},
            {"order_no":"","status":"x"},
            {"order_no":"E2","status":"paid","items":[{"title":"cup","image_url":"javascript:x"}]},
            {"status":"no number"}]}"#;
        let orders = parse(wrapped).unwrap();
        assert_eq!(orders.len(), 1);
        assert!(
            matches!(&orders[0].card, Card::Order { order_no, amount, .. }
            if order_no == "E1" && amount.as_deref() == Some("59"))
        );
        let bare = br#"[{"order_no":"E3","status":"delivered","logistics":"  SF 123  "}]"#;
        let orders = parse(bare).unwrap();
        assert_eq!(orders[0].logistics.as_deref(), Some("SF 123"));
        assert_eq!(parse(b"<html>").unwrap_err(), Failure::BadAnswer);
        assert_eq!(parse(br#"{"orders":3}"#).unwrap_err(), Failure::BadAnswer);
    }

    #[test]
    fn the_signature_covers_time_path_and_query() {
        let a = signature(b"0123456789abcdef", 1_700_000_000, "/orders?customer=u1");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(
            a,
            signature(b"0123456789abcdef", 1_700_000_001, "/orders?customer=u1")
        );
        assert_ne!(
            a,
            signature(b"0123456789abcdef", 1_700_000_000, "/orders?customer=u2")
        );
        assert_ne!(
            a,
            signature(b"fedcba9876543210", 1_700_000_000, "/orders?customer=u1")
        );
    }
}
