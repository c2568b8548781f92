//! Identified customers (issue #17): the shop's backend vouches for its logged-in customer
//! with an HS256 JWT (`sub`, `exp`, optional `name`, `tier`, `phone`) passed as
//! `?identity=JWT` on `/ws/customer`.
//!
//! Nothing from a token is trusted unless its signature and expiry check out; a bad token is
//! answered with `bad_identity` and the chat goes on anonymous. The shop's customer id never
//! leaves this module in plain: a customer is known by a keyed hash of `sub` (the store's
//! blind-index key, as for visitor ids, in a domain of its own so an unsigned `visitor` id
//! can never name an identified customer), and the personal fields travel only inside the
//! encrypted log and store, masked toward agents.

use std::path::PathBuf;

use blake2::digest::Mac;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::redact::Secret;
use crate::store::KeyRing;

/// Environment variable holding the shared secret (takes precedence over `secret_file`).
pub const SECRET_ENV: &str = "KEFU_IDENTITY_SECRET";

/// Longest token accepted on the query string; a longer one is refused unread.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Shortest secret accepted: a short HS256 key can be brute-forced offline from one token.
pub const MIN_SECRET_BYTES: usize = 16;

/// Seconds of clock skew tolerated on `exp` between the shop's backend and the gateway.
const LEEWAY_S: u64 = 30;

/// `[identity]` settings. The secret itself comes from [`SECRET_ENV`] or `secret_file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// A file holding the shared secret (first line); empty: none.
    #[serde(default)]
    pub secret_file: PathBuf,
    /// Filled from the environment by [`crate::Settings::load`].
    #[serde(skip)]
    pub secret: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity.secret_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the identity secret is {0} bytes; use at least {MIN_SECRET_BYTES}")]
    Short(usize),
    /// A token that did not verify; the reason is for metrics, never shown in detail.
    #[error("identity token refused: {0}")]
    Refused(&'static str),
}

/// A verified customer: the keyed hash of the shop's id and the personal fields it vouched
/// for (plain here, encrypted wherever stored, masked toward agents).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Keyed hash of `sub`: the same customer from any channel has the same one.
    pub customer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The shop's own id (`sub`), for asking the shop's order endpoint about this customer
    /// (issue #18). Kept like the personal fields: sealed with the store key in the session's
    /// log and in the store's link of the chat, never in records, frames or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_id: Option<String>,
}

crate::redacted_debug!(Identity);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[allow(dead_code)] // checked by the validation
    exp: u64,
    name: Option<String>,
    tier: Option<String>,
    phone: Option<String>,
}

/// Checks identity tokens and hashes customer ids.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Key of the customer hash: the store's blind-index key when there is a store (so every
    /// node, and the store's rows, agree), else one derived from the identity secret.
    hash_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl Verifier {
    /// The verifier for `settings`, or `None` when no secret is configured (tokens are then
    /// refused as `bad_identity`: nothing can be checked).
    pub fn load(
        settings: &IdentitySettings,
        keys: Option<&KeyRing>,
    ) -> Result<Option<Verifier>, IdentityError> {
        let secret = match &settings.secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None if settings.secret_file.as_os_str().is_empty() => return Ok(None),
            None => {
                let path = crate::files::resolve_path(&settings.secret_file);
                let text =
                    std::fs::read_to_string(&path).map_err(|source| IdentityError::Read {
                        path: path.display().to_string(),
                        source,
                    })?;
                text.lines().next().unwrap_or("").trim().as_bytes().to_vec()
            }
        };
        if secret.len() < MIN_SECRET_BYTES {
            return Err(IdentityError::Short(secret.len()));
        }
        let hash_key = keys
            .and_then(|k| k.derived_key("kefu-customer-index"))
            .unwrap_or_else(|| derive(&secret));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Some(Verifier {
            key: DecodingKey::from_secret(&secret),
            validation,
            hash_key,
        }))
    }

    /// Verifies `token` (signature, `exp`, field sizes) and returns the customer it names.
    pub fn verify(&self, token: &str) -> Result<Identity, IdentityError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::Refused("too_long"));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                IdentityError::Refused(match e.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::InvalidSignature => "signature",
                    _ => "malformed",
                })
            })?;
        let c = data.claims;
        let fits = |v: &Option<String>, max: usize| v.as_ref().is_none_or(|s| s.len() <= max);
        if c.sub.is_empty()
            || c.sub.len() > 128
            || !fits(&c.name, 64)
            || !fits(&c.tier, 32)
            || !fits(&c.phone, 32)
        {
            return Err(IdentityError::Refused("malformed"));
        }
        let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(Identity {
            customer: self.customer_hash(&c.sub),
            shop_id: Some(c.sub),
            name: clean(c.name),
            tier: clean(c.tier),
            phone: clean(c.phone),
        })
    }

    /// The keyed hash naming the shop's customer `sub` (never reversible without the key).
    pub fn customer_hash(&self, sub: &str) -> String {
        let mut mac = blake2::Blake2bMac512::new_from_slice(&self.hash_key)
            .unwrap_or_else(|_| unreachable_mac());
        mac.update(b"kefu-customer\0");
        mac.update(sub.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("c.{}", data_encoding::BASE64URL_NOPAD.encode(&tag[..24]))
    }
}

/// A 32-byte key always fits BLAKE2b's MAC (keys up to 64 bytes); kept apart so the
/// impossible branch has a name.
fn unreachable_mac() -> blake2::Blake2bMac512 {
    #[allow(clippy::expect_used)]
    blake2::Blake2bMac512::new_from_slice(&[0u8; 32]).expect("32-byte BLAKE2b key")
}

fn derive(secret: &[u8]) -> [u8; 32] {
    let mut mac = blake2::Blake2bMac512::new_from_slice(&secret[..secret.len().min(64)])
        .unwrap_or_else(|_| unreachable_mac());
    mac.update(b"kefu customer hash key\0");
    let tag = mac.finalize().into_bytes();
    let mut key = [0u8; 32];
    key.copy_from_slice(&tag[..32]);
    key
}

/// The masked view of a name toward agents: its first character, the rest starred.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => {
            let rest = chars.count().clamp(1, 3);
            format!("{first}{}", "*".repeat(rest))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "test-identity-secret-0123456789";

    fn verifier() -> Verifier {
        let settings = IdentitySettings {
            secret: Some(Secret::new(SECRET)),
            ..IdentitySettings::default()
        };
        Verifier::load(&settings, None).unwrap().unwrap()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        crate::session::now_ms() / 1000 + 3600
    }

    #[test]
    fn verifies_and_hashes_the_customer() {
        let v = verifier();
        let id = v
            .verify(&token(
                serde_json::json!({"sub":"u1","exp":in_an_hour(),"name":"王小明","tier":"vip","phone":"13812345678"}),
                SECRET,
            ))
            .unwrap();
        assert!(id.customer.starts_with("c."));
        assert!(!id.customer.contains("u1"));
        assert_eq!(id.customer, v.customer_hash("u1"));
        assert_ne!(id.customer, v.customer_hash("u2"));
        assert_eq!(id.tier.as_deref(), Some("vip"));
        assert!(!format!("{id:?}").contains("13812345678"));
    }

    #[test]
    fn refuses_bad_tokens() {
        let v = verifier();
        let bad_sig = token(
            serde_json::json!({"sub":"u1","exp":in_an_hour()}),
            "another-secret-0123456789",
        );
        assert!(v.verify(&bad_sig).is_err());
        let expired = token(serde_json::json!({"sub":"u1","exp":1000}), SECRET);
        assert!(v.verify(&expired).is_err());
        let no_exp = token(serde_json::json!({"sub":"u1"}), SECRET);
        assert!(v.verify(&no_exp).is_err());
        assert!(v.verify("not.a.jwt").is_err());
        assert!(v.verify("").is_err());
        let long_sub = token(
            serde_json::json!({"sub":"x".repeat(500),"exp":in_an_hour()}),
            SECRET,
        );
        assert!(v.verify(&long_sub).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        let settings = IdentitySettings {
            secret: Some(Secret::new("short")),
            ..IdentitySettings::default()
        };
        assert!(matches!(
            Verifier::load(&settings, None),
            Err(IdentityError::Short(5))
        ));
        assert!(Verifier::load(&IdentitySettings::default(), None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn names_are_masked() {
        assert_eq!(mask_name("王小明"), "王**");
        assert_eq!(mask_name("Li"), "L*");
        assert_eq!(mask_name(""), "");
    }
}
