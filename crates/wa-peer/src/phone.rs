//! The phone's half of linking: read a scanned QR code and vouch for the new device with a
//! correctly signed pair-success (ADV identity signed by a fresh account key, HMAC-keyed by the
//! secret the QR code carries), exactly what the client verifies before storing credentials.

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use buffa::Message as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;
use wacore_libsignal::protocol::KeyPair;
use waproto::whatsapp::{self as wa, ADVEncryptionType};

/// What a QR code tells the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub pairing_ref: String,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub adv_secret: Vec<u8>,
}

/// Parses `ref,noise,identity,adv_secret[,client_type]` (standard base64), with or without the
/// linked-devices deep-link prefix.
pub fn parse_qr(qr: &str) -> anyhow::Result<Scanned> {
    let body = qr
        .trim()
        .strip_prefix("https://wa.me/settings/linked_devices#")
        .unwrap_or(qr.trim());
    let parts: Vec<&str> = body.split(',').collect();
    if parts.len() < 4 {
        bail!("not a WhatsApp linking code (expected 4 or 5 comma-separated fields)");
    }
    let b64 = |s: &str, what: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .with_context(|| format!("{what} is not base64"))
    };
    let key = |s: &str, what: &str| -> anyhow::Result<[u8; 32]> {
        b64(s, what)?
            .try_into()
            .map_err(|_| anyhow!("{what} is not 32 bytes"))
    };
    Ok(Scanned {
        pairing_ref: parts[0].to_owned(),
        noise_pub: key(parts[1], "noise key")?,
        identity_pub: key(parts[2], "identity key")?,
        adv_secret: b64(parts[3], "pairing secret")?,
    })
}

/// The `<iq><pair-success>` that links the scanned device as `user`:`device`.
pub fn pair_success(
    iq_id: &str,
    scanned: &Scanned,
    user: &str,
    device: u16,
) -> anyhow::Result<Node> {
    let mut rng = rand::rng();
    let account = KeyPair::generate(&mut rng);
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(rand::random::<u32>()),
        timestamp: Some(now_secs() as u64),
        key_index: Some(1),
        account_type: Some(ADVEncryptionType::E2EE),
        device_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    // Account signature: prefix 6,0 || details || the device's identity key.
    let mut to_sign = vec![6u8, 0];
    to_sign.extend_from_slice(&details);
    to_sign.extend_from_slice(&scanned.identity_pub);
    let signature = account
        .private_key
        .calculate_signature(&to_sign, &mut rng)
        .map_err(|e| anyhow!("signing: {e}"))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&scanned.adv_secret)
        .map_err(|e| anyhow!("hmac key: {e}"))?;
    mac.update(&signed);
    let container = wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    Ok(NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "set")
        .attr("id", iq_id)
        .attr("xmlns", "md")
        .attr("t", now_secs().to_string())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(container).build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
                NodeBuilder::new("device")
                    .attr("jid", format!("{user}:{device}@s.whatsapp.net"))
                    .attr("lid", format!("{}:{device}@lid", lid_of(user)))
                    .build(),
                NodeBuilder::new("biz")
                    .attr("name", "Lifeline peer")
                    .build(),
            ])
            .build()])
        .build())
}

/// The primary's side of pairing by phone code: the companion wrapped its ephemeral key with the
/// code it shows; the operator types that code into the phone, which unwraps it, answers with
/// its own wrapped ephemeral and identity, and later derives the same pairing secret from the
/// companion's key bundle.
pub struct CodePairing {
    pub phone: String,
    pub pairing_ref: Vec<u8>,
    pub noise_pub: [u8; 32],
    wrapped_companion_ephemeral: Vec<u8>,
    state: Option<Primary>,
}

struct Primary {
    companion_ephemeral: [u8; 32],
    ephemeral: KeyPair,
    identity: KeyPair,
}

impl CodePairing {
    pub fn new(phone: String, pairing_ref: Vec<u8>, noise_pub: [u8; 32], wrapped: Vec<u8>) -> Self {
        Self {
            phone,
            pairing_ref,
            noise_pub,
            wrapped_companion_ephemeral: wrapped,
            state: None,
        }
    }

    /// The operator typed `code` on the phone: unwrap the companion's ephemeral (a wrong code
    /// yields a different key, which the companion's bundle will later fail to authenticate)
    /// and build the primary-hello notification.
    pub fn enter_code(&mut self, code: &str, notification_id: &str) -> anyhow::Result<Node> {
        use wacore::pair_code::PairCodeUtils;
        let code = code.trim().replace('-', "").to_uppercase();
        let companion_ephemeral =
            PairCodeUtils::decrypt_primary_ephemeral_pub(&self.wrapped_companion_ephemeral, &code)
                .map_err(|e| anyhow!("companion key: {e}"))?;
        let mut rng = rand::rng();
        let ephemeral = KeyPair::generate(&mut rng);
        let identity = KeyPair::generate(&mut rng);
        let mut eph_pub = [0u8; 32];
        eph_pub.copy_from_slice(ephemeral.public_key.public_key_bytes());
        let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, &code);
        let node = NodeBuilder::new("notification")
            .attr("from", "s.whatsapp.net")
            .attr("type", "link_code_companion_reg")
            .attr("id", notification_id)
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(wrapped.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(identity.public_key.public_key_bytes().to_vec())
                        .build(),
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(self.pairing_ref.clone())
                        .build(),
                ])
                .build()])
            .build();
        self.state = Some(Primary {
            companion_ephemeral,
            ephemeral,
            identity,
        });
        Ok(node)
    }

    /// The companion's finish: decrypt its key bundle and derive the pairing secret both sides
    /// now share, ready for a pair-success.
    pub fn finish(
        &self,
        wrapped_bundle: &[u8],
        companion_identity: &[u8],
    ) -> anyhow::Result<Scanned> {
        use wacore_libsignal::protocol::PublicKey;
        let p = self
            .state
            .as_ref()
            .ok_or_else(|| anyhow!("companion finished before the code was entered"))?;
        if wrapped_bundle.len() < 32 + 12 + 16 {
            bail!("key bundle too short");
        }
        let their_eph = PublicKey::from_djb_public_key_bytes(&p.companion_ephemeral)
            .map_err(|e| anyhow!("companion ephemeral: {e}"))?;
        let shared_eph = p
            .ephemeral
            .private_key
            .calculate_agreement(&their_eph)
            .map_err(|e| anyhow!("agreement: {e}"))?;
        let mut enc_key = [0u8; 32];
        wacore::crypto::hkdf_sha256_into(
            &shared_eph,
            Some(&wrapped_bundle[..32]),
            b"link_code_pairing_key_bundle_encryption_key",
            &mut enc_key,
        )
        .map_err(|e| anyhow!("hkdf: {e:?}"))?;
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&wrapped_bundle[32..44]);
        let mut bundle = Vec::new();
        wacore_libsignal::crypto::aes_256_gcm_decrypt(
            &enc_key,
            &iv,
            b"",
            &wrapped_bundle[44..],
            &mut bundle,
        )
        .map_err(|_| anyhow!("the key bundle does not decrypt: wrong code?"))?;
        if bundle.len() != 96 || bundle[..32] != *companion_identity {
            bail!("the key bundle does not match the companion's identity");
        }
        let companion_id = PublicKey::from_djb_public_key_bytes(&bundle[..32])
            .map_err(|e| anyhow!("companion identity: {e}"))?;
        let shared_id = p
            .identity
            .private_key
            .calculate_agreement(&companion_id)
            .map_err(|e| anyhow!("agreement: {e}"))?;
        let mut ikm = Vec::with_capacity(96);
        ikm.extend_from_slice(&shared_eph);
        ikm.extend_from_slice(&shared_id);
        ikm.extend_from_slice(&bundle[64..96]);
        let mut adv_secret = [0u8; 32];
        wacore::crypto::hkdf_sha256_into(&ikm, None, b"adv_secret", &mut adv_secret)
            .map_err(|e| anyhow!("hkdf: {e:?}"))?;
        let mut identity_pub = [0u8; 32];
        identity_pub.copy_from_slice(&bundle[..32]);
        Ok(Scanned {
            pairing_ref: String::from_utf8_lossy(&self.pairing_ref).into_owned(),
            noise_pub: self.noise_pub,
            identity_pub,
            adv_secret: adv_secret.to_vec(),
        })
    }
}

/// A stable LID for a phone number (any numeric user works for the client).
pub fn lid_of(user: &str) -> String {
    format!("9{user}")
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_parse_with_and_without_the_deep_link_and_bad_ones_are_refused() {
        let k = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let qr = format!("2@ref,{k},{k},{k},9");
        let s = parse_qr(&qr).expect("parse");
        assert_eq!(s.pairing_ref, "2@ref");
        assert_eq!(s.identity_pub, [7u8; 32]);
        let linked = format!("https://wa.me/settings/linked_devices#{qr}");
        assert_eq!(parse_qr(&linked).expect("parse"), s);
        assert!(parse_qr("2@ref,abc").is_err());
        assert!(parse_qr(&format!("2@ref,{k},short,{k}")).is_err());
    }
}
