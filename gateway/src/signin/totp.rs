//! RFC 6238 one-time codes: HMAC-SHA-1, 6 digits, 30-second steps, the step before and after
//! accepted (clocks drift, and a code typed at the end of its step arrives in the next).
//!
//! The secret never sits in a roster in clear: `kefu-gateway totp-enroll ID` seals it with the
//! store's key ring, bound to the account id (so a value copied to another entry does not
//! open), and the rosters open it at load. A code is good once: [`UsedCodes`] remembers the
//! steps each account has used while they are still valid.

use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha1::Sha1;

use crate::store::crypto::Aad;
use crate::store::{CryptoError, KeyRing};

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds of one step.
pub const STEP_S: u64 = 30;
/// Random bytes of a new secret (160 bits, the size RFC 4226 recommends for HMAC-SHA-1).
pub const SECRET_BYTES: usize = 20;

/// An enrolled account's secret, opened. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rng().fill(&mut bytes[..]);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret as authenticator apps take it (RFC 4648 base32, no padding).
    pub fn base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// The code of time step `step` (RFC 4226 dynamic truncation).
    pub fn code_at(&self, step: u64) -> String {
        // HMAC takes a key of any length; this cannot fail.
        let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(&step.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        let offset = usize::from(tag[tag.len() - 1] & 0x0f);
        let word = u32::from_be_bytes([
            tag[offset] & 0x7f,
            tag[offset + 1],
            tag[offset + 2],
            tag[offset + 3],
        ]);
        format!("{:06}", word % 1_000_000)
    }

    /// The step (now, one before or one after) whose code `code` is, compared without an
    /// early exit.
    pub fn matching_step(&self, code: &str, unix_s: u64) -> Option<u64> {
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now = unix_s / STEP_S;
        [now.saturating_sub(1), now, now + 1]
            .into_iter()
            .find(|&step| {
                crate::admin::constant_time_eq(self.code_at(step).as_bytes(), code.as_bytes())
            })
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn aad(id: &str) -> Aad<'_> {
    Aad {
        table: "kefu_totp",
        row: id,
        field: "secret",
    }
}

/// The roster's `totp` value for account `id`: the secret sealed with the current store key.
pub fn seal(keys: &KeyRing, id: &str, secret: &TotpSecret) -> Result<String, CryptoError> {
    keys.encrypt_field(&secret.base32(), aad(id))
}

/// The secret of a roster's `totp` value for account `id`.
pub fn open(keys: &KeyRing, id: &str, sealed: &str) -> Result<TotpSecret, CryptoError> {
    let plain = keys.decrypt_field(sealed, aad(id))?;
    let bytes = BASE32_NOPAD
        .decode(plain.as_bytes())
        .map_err(|_| CryptoError::Malformed)?;
    if bytes.len() < SECRET_BYTES {
        return Err(CryptoError::Malformed);
    }
    Ok(TotpSecret(bytes))
}

/// `otpauth://totp/kefu:ID?secret=…&issuer=kefu`, for a QR code or an app's manual entry.
pub fn otpauth_uri(id: &str, secret: &TotpSecret) -> String {
    let label: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "otpauth://totp/kefu:{label}?secret={}&issuer=kefu",
        secret.base32()
    )
}

/// Most accounts remembered at once; accounts are roster entries, so this is a safety net.
const MAX_ACCOUNTS: usize = 10_000;

/// The steps each account has used while they can still be valid (the step before now and
/// later), so a code seen on the wire or over a shoulder cannot be used again. Node-local.
#[derive(Default)]
pub struct UsedCodes {
    used: DashMap<String, Vec<u64>>,
}

impl UsedCodes {
    /// Whether `code` is good for `secret` now and not used before by `account`; marks it used.
    pub fn accept(&self, account: &str, secret: &TotpSecret, code: &str) -> bool {
        let unix = unix_now();
        let Some(step) = secret.matching_step(code, unix) else {
            return false;
        };
        let oldest_valid = (unix / STEP_S).saturating_sub(1);
        if self.used.len() >= MAX_ACCOUNTS && !self.used.contains_key(account) {
            self.used
                .retain(|_, steps| steps.iter().any(|&s| s >= oldest_valid));
            if self.used.len() >= MAX_ACCOUNTS {
                // Refused rather than accepted unchecked: fail closed.
                return false;
            }
        }
        let mut steps = self.used.entry(account.to_string()).or_default();
        steps.retain(|&s| s >= oldest_valid);
        if steps.contains(&step) {
            return false;
        }
        steps.push(step);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 key, last 6 of the 8 digits.
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        for (t, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(t / STEP_S), code, "t={t}");
            assert_eq!(secret.matching_step(code, t), Some(t / STEP_S));
            assert_eq!(secret.matching_step(code, t + STEP_S), Some(t / STEP_S));
            assert_eq!(secret.matching_step(code, t + 3 * STEP_S), None);
        }
        assert_eq!(secret.matching_step("28708", 59), None);
        assert_eq!(secret.matching_step("28708a", 59), None);
    }

    #[test]
    fn sealed_secrets_open_for_their_account_only() {
        let keys = KeyRing::from_keys(&[("k1", [7u8; 32])]).unwrap();
        let secret = TotpSecret::generate();
        let sealed = seal(&keys, "a01", &secret).unwrap();
        assert_eq!(open(&keys, "a01", &sealed).unwrap(), secret);
        assert!(open(&keys, "a02", &sealed).is_err());
        let other = KeyRing::from_keys(&[("k1", [8u8; 32])]).unwrap();
        assert!(open(&other, "a01", &sealed).is_err());
        assert!(format!("{secret:?}").find(&secret.base32()).is_none());
    }

    #[test]
    fn a_code_is_good_once() {
        let used = UsedCodes::default();
        let secret = TotpSecret::generate();
        let code = secret.code_at(unix_now() / STEP_S);
        assert!(used.accept("agent:a01", &secret, &code));
        assert!(!used.accept("agent:a01", &secret, &code));
        assert!(used.accept("agent:a02", &secret, &code));
        assert!(!used.accept("agent:a03", &secret, "000000x"));
    }
}
