//! Signing as the Standard Webhooks specification defines it: a secret is `whsec_` followed by
//! the base64 of its key bytes; a signature is `v1,` followed by the base64 HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}`; the `webhook-signature` header lists one signature
//! per secret, separated by spaces (two while a secret is being rotated).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use lifeline_engine::secrets::SecretValue;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// Bytes of key in a generated secret (the specification asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// A signing key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// A new random key and its `whsec_…` form (shown to the operator once, kept in the keyring).
    pub fn generate() -> (Self, SecretValue) {
        let key: [u8; KEY_BYTES] = rand::random();
        let value = SecretValue::new(format!("{PREFIX}{}", STANDARD.encode(key)));
        (Self(key.to_vec()), value)
    }

    /// Reads a `whsec_…` secret; `None` when it is not one.
    pub fn parse(value: &SecretValue) -> Option<Self> {
        let b64 = value.expose().strip_prefix(PREFIX)?;
        let key = STANDARD.decode(b64).ok()?;
        (!key.is_empty()).then_some(Self(key))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per key, space-separated.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example the specification's reference libraries test against.
    #[test]
    fn signs_the_specification_s_example() {
        let key = SigningKey::parse(&SecretValue::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
            .expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_round_trip_and_never_print() {
        let (key, value) = SigningKey::generate();
        assert!(value.expose().starts_with("whsec_"));
        assert_eq!(SigningKey::parse(&value), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&value.expose()[6..]));
        let (other, _) = SigningKey::generate();
        assert_ne!(key, other);
        let header = signature_header(&[key.clone(), other], "msg_1", 5, b"{}");
        let sigs: Vec<_> = header.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[0], key.sign("msg_1", 5, b"{}"));
        assert!(SigningKey::parse(&SecretValue::new("nope")).is_none());
    }
}
