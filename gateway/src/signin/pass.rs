//! Sign-in passes: after a good code, the gateway hands out a signed, expiring pass, so a
//! page that polls (the supervisor view) or a socket that reconnects (the console) does not
//! need a new code for every request. A pass is `EXPIRES_MS.TAG`, the tag a keyed BLAKE2b
//! MAC over the account, the account's token hash and the expiry: it is worth nothing
//! without the account's own token, dies when the token is changed, and every node sharing
//! the store key accepts it (the MAC key is derived from that key).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use blake2::digest::Mac;

use crate::session::now_ms;
use crate::store::KeyRing;

/// Issues and checks passes.
pub struct Passes {
    key: Option<[u8; 32]>,
    ttl_ms: u64,
}

impl Passes {
    /// No key ring: no passes (nobody can be enrolled without one either).
    pub fn new(keys: Option<&KeyRing>, ttl_s: u64) -> Self {
        Self {
            key: keys.and_then(|k| k.derived_key("kefu sign-in pass v1")),
            ttl_ms: ttl_s.saturating_mul(1000),
        }
    }

    /// A new pass for `account` (bound to its token hash `bound`) and when it expires.
    pub fn issue(&self, account: &str, bound: &str) -> Option<(String, u64)> {
        let key = self.key.as_ref()?;
        let expires = now_ms().saturating_add(self.ttl_ms);
        let tag = tag(key, account, bound, expires)?;
        Some((format!("{expires}.{tag}"), expires))
    }

    /// Whether `pass` is a pass of `account`, for the token hash `bound`, not yet expired.
    pub fn check(&self, account: &str, bound: &str, pass: &str) -> bool {
        let Some(key) = self.key.as_ref() else {
            return false;
        };
        let Some((expires, given)) = pass.split_once('.') else {
            return false;
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return false;
        };
        if expires <= now_ms() {
            return false;
        }
        tag(key, account, bound, expires)
            .is_some_and(|t| crate::admin::constant_time_eq(t.as_bytes(), given.as_bytes()))
    }
}

fn tag(key: &[u8; 32], account: &str, bound: &str, expires: u64) -> Option<String> {
    let mut mac = blake2::Blake2bMac512::new_from_slice(key).ok()?;
    for part in [account.as_bytes(), bound.as_bytes(), &expires.to_be_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    Some(B64.encode(&mac.finalize().into_bytes()[..24]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_for_its_account_and_token_only() {
        let keys = KeyRing::from_keys(&[("k1", [3u8; 32])]).unwrap();
        let passes = Passes::new(Some(&keys), 60);
        let (pass, expires) = passes.issue("operator:sup1", "hash-1").unwrap();
        assert!(expires > now_ms());
        assert!(passes.check("operator:sup1", "hash-1", &pass));
        assert!(!passes.check("operator:sup2", "hash-1", &pass));
        assert!(!passes.check("operator:sup1", "hash-2", &pass));
        let later = pass.replacen(|c: char| c.is_ascii_digit(), "9", 1);
        assert!(!passes.check("operator:sup1", "hash-1", &later));
        assert!(Passes::new(None, 60).issue("operator:sup1", "h").is_none());
    }
}
