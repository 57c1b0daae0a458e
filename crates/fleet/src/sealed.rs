//! Device stores sealed for the fleet store: AES-256-GCM under a fleet key that each host keeps
//! in its own OS keyring, so a dump of the database alone does not hand out any number.
//!
//! A sealed blob is `version (1 byte) ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag (16 bytes)`.
//! The account id and what the blob is are authenticated with it (the AEAD's associated data),
//! so a blob copied onto another account's row, or read as something else, does not open.
//!
//! The fleet store keeps a fingerprint of the key (a SHA-256 of it under a label of its own,
//! never the key): a host configured with another key is refused before it seals anything the
//! rest of the fleet could not open.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::AccountId;

const VERSION: u8 = 1;
/// The text form's prefix: says what the secret is when someone finds it in a keyring.
const TEXT_PREFIX: &str = "lifeline-fleet-key-v1:";

/// Why a fleet key or a sealed blob was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not a Lifeline fleet key (expected {TEXT_PREFIX} followed by 32 bytes in base64)")]
    BadKey,
    #[error("the system's random number generator failed")]
    Random,
    #[error(
        "a sealed device store of account {account} does not open with this host's fleet key (another key, or the data was altered)"
    )]
    Unopenable { account: AccountId },
}

/// What a sealed blob holds (authenticated with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A WhatsApp device store.
    DeviceStore,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::DeviceStore => "device-store",
        }
    }
}

/// The fleet's 256-bit key. Its `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct FleetKey {
    bytes: [u8; 32],
}

impl fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FleetKey({})", self.fingerprint())
    }
}

impl FleetKey {
    /// A new random key (the first host of a fleet makes it; the others import its text).
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(Self { bytes })
    }

    /// Reads the text form ([`FleetKey::to_text`]), as kept in the keyring.
    pub fn from_text(text: &str) -> Result<Self, SealError> {
        let encoded = text
            .trim()
            .strip_prefix(TEXT_PREFIX)
            .ok_or(SealError::BadKey)?;
        let bytes: [u8; 32] = STANDARD
            .decode(encoded)
            .map_err(|_| SealError::BadKey)?
            .try_into()
            .map_err(|_| SealError::BadKey)?;
        Ok(Self { bytes })
    }

    pub fn to_text(&self) -> String {
        format!("{TEXT_PREFIX}{}", STANDARD.encode(self.bytes))
    }

    /// 16 hex digits that tell keys apart without revealing them.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"lifeline fleet key fingerprint\0")
            .chain_update(self.bytes)
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn key(&self) -> LessSafeKey {
        // 32 bytes is exactly AES-256's key length, so this cannot fail.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("a 32-byte key"))
    }

    fn aad(account: AccountId, purpose: Purpose) -> Vec<u8> {
        format!("lifeline-fleet\0{}\0{account}", purpose.label()).into_bytes()
    }

    /// Seals `plain` for `account`.
    pub fn seal(
        &self,
        account: AccountId,
        purpose: Purpose,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(account, purpose)),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a blob sealed for `account` and `purpose`; anything else is refused.
    pub fn open(
        &self,
        account: AccountId,
        purpose: Purpose,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let refused = SealError::Unopenable { account };
        let (&version, rest) = sealed.split_first().ok_or_else(|| refused.clone())?;
        if version != VERSION || rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(refused);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused.clone())?;
        let mut body = body.to_vec();
        let plain = self
            .key()
            .open_in_place(nonce, Aad::from(Self::aad(account, purpose)), &mut body)
            .map_err(|_| refused)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blobs_open_only_with_the_key_for_the_account_they_were_sealed_for() {
        let key = FleetKey::generate().expect("key");
        let plain = b"SQLite format 3\0 ... identity keys ...".to_vec();
        let sealed = key.seal(7, Purpose::DeviceStore, &plain).expect("seal");
        assert_eq!(sealed.len(), 1 + 12 + plain.len() + 16);
        assert!(
            !sealed.windows(8).any(|w| w == b"identity"),
            "the plaintext shows through"
        );
        assert_eq!(
            key.open(7, Purpose::DeviceStore, &sealed),
            Ok(plain.clone())
        );
        // Two seals of the same bytes differ (a fresh nonce each time).
        assert_ne!(
            key.seal(7, Purpose::DeviceStore, &plain).expect("seal"),
            sealed
        );

        let refused = Err(SealError::Unopenable { account: 8 });
        assert_eq!(key.open(8, Purpose::DeviceStore, &sealed), refused);
        let other = FleetKey::generate().expect("key");
        assert!(other.open(7, Purpose::DeviceStore, &sealed).is_err());
        for i in [0, 5, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert!(
                key.open(7, Purpose::DeviceStore, &altered).is_err(),
                "byte {i}"
            );
        }
        assert!(key.open(7, Purpose::DeviceStore, &sealed[..20]).is_err());
        assert!(key.open(7, Purpose::DeviceStore, &[]).is_err());
    }

    #[test]
    fn keys_travel_as_text_and_show_only_their_fingerprint() {
        let key = FleetKey::generate().expect("key");
        let text = key.to_text();
        let back = FleetKey::from_text(&format!("  {text}\n")).expect("read back");
        assert_eq!(back.fingerprint(), key.fingerprint());
        assert_eq!(key.fingerprint().len(), 16);
        assert_ne!(
            key.fingerprint(),
            FleetKey::generate().expect("key").fingerprint()
        );
        let shown = format!("{key:?}");
        assert!(!shown.contains(&text[TEXT_PREFIX.len()..]), "{shown}");
        for bad in [
            "",
            "lifeline-fleet-key-v1:",
            "lifeline-fleet-key-v1:AAAA",
            &text[TEXT_PREFIX.len()..],
        ] {
            assert_eq!(
                FleetKey::from_text(bad).err(),
                Some(SealError::BadKey),
                "{bad}"
            );
        }
    }
}
