//! What a message can carry besides text: an uploaded photo or file ([`AttachmentInfo`]) and
//! a card ([`Card`]: a product the customer looks at, an order an agent sends). Both ride on
//! `message` frames, transcript lines and log entries as optional fields ([`Rich`]), so a
//! client that knows only text still gets every message.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, FrameError};

/// An attachment as a message carries it. `url`/`thumb_url` are short-lived signed links,
/// filled in each time the frame is written to a socket; the log and the transcript keep the
/// rest only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub id: String,
    /// `image` or `file`.
    pub kind: String,
    pub name: String,
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_url: Option<String>,
}

/// A card, by `kind`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Card {
    /// What the customer is looking at in the shop (`data-product`, `kefu.showProduct`).
    Product {
        sku: String,
        title: String,
        #[serde(default, deserialize_with = "text_or_number")]
        price: Option<String>,
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        url: Option<String>,
    },
    /// An order, sent by an agent.
    Order {
        order_no: String,
        status: String,
        #[serde(default)]
        items: Vec<OrderItem>,
        #[serde(default, deserialize_with = "text_or_number")]
        amount: Option<String>,
    },
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    pub title: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub quantity: Option<u32>,
    #[serde(default, deserialize_with = "text_or_number")]
    pub price: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
}

/// The optional parts of a message, flattened into the frames and lines that carry them
/// (boxed: most messages have neither, and the frames stay small).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rich {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Box<AttachmentInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Box<Card>>,
}

/// An order as the shop's endpoint reports it (`integrations.orders_url`), shown to the agent
/// beside the chat: an order card, sendable as it is, and what the card does not carry.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ShopOrder {
    /// Always `kind: "order"`.
    pub card: Card,
    /// When it was placed, as the shop writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<String>,
    /// The latest logistics news (carrier, tracking, last scan), as the shop writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logistics: Option<String>,
}

impl ShopOrder {
    /// Personal data masked (toward an agent): the card's words and the logistics line,
    /// which may hold an address or a courier's phone number.
    pub fn masked(mut self) -> Self {
        self.card.mask();
        self.logistics = self
            .logistics
            .map(|l| crate::mask::mask_text(&l).into_owned());
        self
    }
}

crate::redacted_debug!(Card, OrderItem, Rich, ShopOrder);

impl Rich {
    pub fn is_empty(&self) -> bool {
        self.attachment.is_none() && self.card.is_none()
    }

    pub fn with_attachment(attachment: Option<AttachmentInfo>) -> Self {
        Self {
            attachment: attachment.map(Box::new),
            card: None,
        }
    }

    pub fn with_card(card: Card) -> Self {
        Self {
            attachment: None,
            card: Some(Box::new(card)),
        }
    }

    /// Personal data masked in the card's words (toward an agent, like text).
    pub fn masked(mut self) -> Self {
        if let Some(card) = self.card.as_mut() {
            card.mask();
        }
        self
    }
}

const SHORT: usize = 64;
const TITLE: usize = 200;
const URL: usize = 2048;
const ITEMS: usize = 50;

/// Prices and amounts may come as `"59.00"` or `59`.
pub(crate) fn text_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

fn invalid(message: String) -> FrameError {
    FrameError {
        code: ErrorCode::BadField,
        message,
    }
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<(), FrameError> {
    if required && value.trim().is_empty() {
        return Err(invalid(format!("card `{field}` must not be empty")));
    }
    if value.chars().count() > max {
        return Err(FrameError {
            code: ErrorCode::TooLong,
            message: format!("card `{field}` is longer than {max} characters"),
        });
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(invalid(format!("card `{field}` holds control characters")));
    }
    Ok(())
}

fn link(field: &str, value: Option<&str>) -> Result<(), FrameError> {
    let Some(value) = value else {
        return Ok(());
    };
    text(field, value, URL, true)?;
    let lower = value.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
    if !host_ok || value.contains(char::is_whitespace) || value.contains(['<', '>', '"', '\\']) {
        return Err(invalid(format!("card `{field}` must be an http(s) URL")));
    }
    Ok(())
}

impl Card {
    /// Known kinds are checked by parsing; here: lengths, and links that are http(s) only
    /// (a `javascript:` link rendered in the console would run in the agent's page).
    pub fn validate(&self) -> Result<(), FrameError> {
        match self {
            Card::Product {
                sku,
                title,
                price,
                image_url,
                url,
            } => {
                text("sku", sku, SHORT, true)?;
                text("title", title, TITLE, true)?;
                text("price", price.as_deref().unwrap_or(""), SHORT, false)?;
                link("image_url", image_url.as_deref())?;
                link("url", url.as_deref())
            }
            Card::Order {
                order_no,
                status,
                items,
                amount,
            } => {
                text("order_no", order_no, SHORT, true)?;
                text("status", status, SHORT, true)?;
                text("amount", amount.as_deref().unwrap_or(""), SHORT, false)?;
                if items.len() > ITEMS {
                    return Err(invalid(format!(
                        "an order card lists at most {ITEMS} items"
                    )));
                }
                for item in items {
                    text("items.title", &item.title, TITLE, true)?;
                    text("items.sku", item.sku.as_deref().unwrap_or(""), SHORT, false)?;
                    text(
                        "items.price",
                        item.price.as_deref().unwrap_or(""),
                        SHORT,
                        false,
                    )?;
                    link("items.image_url", item.image_url.as_deref())?;
                }
                Ok(())
            }
        }
    }

    /// Words of the card, for the leak rules and the transcript's one-line summary.
    pub fn summary(&self) -> String {
        match self {
            Card::Product {
                sku, title, price, ..
            } => format!("[product {sku}] {title} {}", price.as_deref().unwrap_or("")),
            Card::Order {
                order_no,
                status,
                items,
                amount,
            } => {
                let names: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
                format!(
                    "[order {order_no}] {status} {} {}",
                    names.join(", "),
                    amount.as_deref().unwrap_or("")
                )
            }
        }
    }

    fn mask(&mut self) {
        let m = |t: &mut String| {
            if let std::borrow::Cow::Owned(masked) = crate::mask::mask_text(t) {
                *t = masked;
            }
        };
        match self {
            Card::Product { title, .. } => m(title),
            Card::Order { status, items, .. } => {
                m(status);
                for item in items {
                    m(&mut item.title);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(json: &str) -> Result<Card, String> {
        let card: Card = serde_json::from_str(json).map_err(|e| e.to_string())?;
        card.validate().map_err(|e| e.message)?;
        Ok(card)
    }

    #[test]
    fn cards_are_validated() {
        assert!(card(r#"{"kind":"product","sku":"A1","title":"杯子","price":59,"url":"https://shop.example/p/1"}"#).is_ok());
        assert!(card(r#"{"kind":"coupon","code":"x"}"#).is_err());
        assert!(
            card(r#"{"kind":"product","sku":"A1","title":"x","url":"javascript:alert(1)"}"#)
                .unwrap_err()
                .contains("http(s)")
        );
        assert!(card(&format!(
            r#"{{"kind":"product","sku":"A1","title":"{}"}}"#,
            "x".repeat(201)
        ))
        .is_err());
        assert!(card(r#"{"kind":"order","order_no":"","status":"shipped"}"#).is_err());
        assert!(card(r#"{"kind":"order","order_no":"E1","status":"shipped","items":[{"title":"cup","quantity":2}],"amount":"118.00"}"#).is_ok());
    }
}
