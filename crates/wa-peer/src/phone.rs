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
