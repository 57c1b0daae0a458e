//! The responder side of WhatsApp's Noise handshakes (XX on first contact, IK when the client
//! cached our static key, XXfallback when IK cannot be accepted) and the framed, encrypted
//! transport that follows. Built on wacore-noise's primitives, mirrored from the initiator.

use anyhow::{Context, anyhow, bail};
use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::framing::{FrameDecoder, encode_frame};
use wacore_noise::{NoiseCipher, NoiseHandshake};
use waproto::whatsapp::{self as wa, HandshakeMessage};

/// The peer's long-lived identity: a static key and a (zero-signed) certificate chain for it.
/// Stable for the peer's lifetime so a client's IK attempt on reconnect can succeed.
pub struct ServerIdentity {
    pub static_kp: KeyPair,
    pub cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub fn generate() -> Self {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let mut key = [0u8; 32];
        key.copy_from_slice(static_kp.public_key.public_key_bytes());
        Self {
            cert_chain: wacore_noise::test_util::build_cert_chain_bytes(&key),
            static_kp,
        }
    }
}

/// Which handshake a connection completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Xx,
    Ik,
    XxFallback,
}

/// A first flight from the client, after the connection header.
pub enum Hello {
    Xx {
        client_ephemeral: [u8; 32],
    },
    Ik {
        client_ephemeral: [u8; 32],
        encrypted_static: Vec<u8>,
        encrypted_payload: Vec<u8>,
    },
}

pub fn parse_hello(frame: &[u8]) -> anyhow::Result<Hello> {
    let msg = waproto::codec::handshake_message_decode(frame)
        .context("client hello is not a HandshakeMessage")?;
    let hello = msg
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow!("no client hello"))?;
    let client_ephemeral: [u8; 32] = hello
        .ephemeral
        .ok_or_else(|| anyhow!("client hello without ephemeral"))?
        .try_into()
        .map_err(|_| anyhow!("client ephemeral is not 32 bytes"))?;
    Ok(match (hello.r#static, hello.payload) {
        (Some(encrypted_static), Some(encrypted_payload)) => Hello::Ik {
            client_ephemeral,
            encrypted_static,
            encrypted_payload,
        },
        _ => Hello::Xx { client_ephemeral },
    })
}

/// Responder state between our ServerHello and the client's finish (XX and XXfallback).
pub struct AwaitFinish {
    noise: NoiseHandshake,
    ephemeral: KeyPair,
    pattern: Pattern,
}

/// The result of a completed handshake.
pub struct Established {
    pub transport: Transport,
    /// The client's static (noise) public key.
    pub client_static: [u8; 32],
    /// The ClientPayload the client sent (protobuf bytes).
    pub client_payload: Vec<u8>,
    pub pattern: Pattern,
}

/// Answers an XX hello (or, with `fallback`, an IK hello we will not accept): our ephemeral, our
/// static and the certificate chain. Returns the ServerHello bytes to frame and send.
pub fn respond_xx(
    id: &ServerIdentity,
    client_ephemeral: &[u8; 32],
    fallback: bool,
) -> anyhow::Result<(Vec<u8>, AwaitFinish)> {
    let (pattern, name) = if fallback {
        (Pattern::XxFallback, NOISE_PATTERN_XXFALLBACK)
    } else {
        (Pattern::Xx, NOISE_PATTERN_XX)
    };
    let mut noise = NoiseHandshake::new(name, &WA_CONN_HEADER)?;
    noise.authenticate(client_ephemeral);
    let ephemeral = KeyPair::generate(&mut rand::rng());
    noise.authenticate(ephemeral.public_key.public_key_bytes());
    // ee
    noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
    let encrypted_static = noise.encrypt(id.static_kp.public_key.public_key_bytes())?;
    // es (from the client's side: DH(e_c, s_s))
    noise.mix_shared_secret(id.static_kp.private_key.serialize(), client_ephemeral)?;
    let encrypted_cert = noise.encrypt(&id.cert_chain)?;
    let msg = HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.public_key.public_key_bytes().to_vec()),
            r#static: Some(encrypted_static),
            payload: Some(encrypted_cert),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((
        waproto::codec::handshake_message_to_vec(&msg),
        AwaitFinish {
            noise,
            ephemeral,
            pattern,
        },
    ))
}

impl AwaitFinish {
    /// Reads the client's finish: its static key and its payload.
    pub fn finish(mut self, frame: &[u8]) -> anyhow::Result<Established> {
        let msg = waproto::codec::handshake_message_decode(frame)
            .context("client finish is not a HandshakeMessage")?;
        let fin = msg
            .client_finish
            .into_option()
            .ok_or_else(|| anyhow!("expected a client finish"))?;
        let enc_static = fin
            .r#static
            .ok_or_else(|| anyhow!("finish without static"))?;
        let enc_payload = fin
            .payload
            .ok_or_else(|| anyhow!("finish without payload"))?;
        let client_static: [u8; 32] = self
            .noise
            .decrypt(&enc_static)?
            .try_into()
            .map_err(|_| anyhow!("client static is not 32 bytes"))?;
        // se
        self.noise
            .mix_shared_secret(self.ephemeral.private_key.serialize(), &client_static)?;
        let client_payload = self.noise.decrypt(&enc_payload)?;
        let (client_write, client_read) = self.noise.finish()?;
        Ok(Established {
            transport: Transport::new(client_write, client_read),
            client_static,
            client_payload,
            pattern: self.pattern,
        })
    }
}

/// Tries to accept an IK hello. `Ok(None)` means it was made for another static key (a peer
/// restart): answer with XXfallback instead.
pub fn respond_ik(
    id: &ServerIdentity,
    client_ephemeral: &[u8; 32],
    encrypted_static: &[u8],
    encrypted_payload: &[u8],
) -> anyhow::Result<Option<(Vec<u8>, Established)>> {
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
    noise.authenticate(id.static_kp.public_key.public_key_bytes());
    noise.authenticate(client_ephemeral);
    // es
    noise.mix_shared_secret(id.static_kp.private_key.serialize(), client_ephemeral)?;
    let Ok(client_static) = noise.decrypt(encrypted_static) else {
        return Ok(None);
    };
    let client_static: [u8; 32] = client_static
        .try_into()
        .map_err(|_| anyhow!("client static is not 32 bytes"))?;
    // ss
    noise.mix_shared_secret(id.static_kp.private_key.serialize(), &client_static)?;
    let Ok(client_payload) = noise.decrypt(encrypted_payload) else {
        return Ok(None);
    };
    let ephemeral = KeyPair::generate(&mut rand::rng());
    noise.authenticate(ephemeral.public_key.public_key_bytes());
    // ee, se
    noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
    let encrypted_cert = noise.encrypt(&id.cert_chain)?;
    let msg = HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.public_key.public_key_bytes().to_vec()),
            payload: Some(encrypted_cert),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (client_write, client_read) = noise.finish()?;
    Ok(Some((
        waproto::codec::handshake_message_to_vec(&msg),
        Established {
            transport: Transport::new(client_write, client_read),
            client_static,
            client_payload,
            pattern: Pattern::Ik,
        },
    )))
}

/// Encrypted frames after the handshake: we read with the client's write key and write with its
/// read key, each direction counting its own messages.
pub struct Transport {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl Transport {
    fn new(client_write: NoiseCipher, client_read: NoiseCipher) -> Self {
        Self {
            read: client_write,
            write: client_read,
            read_counter: 0,
            write_counter: 0,
        }
    }

    pub fn open(&mut self, frame: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut buf = frame.to_vec();
        self.read
            .decrypt_in_place_with_counter(self.read_counter, &mut buf)
            .map_err(|e| anyhow!("decrypt: {e}"))?;
        self.read_counter = self.read_counter.wrapping_add(1);
        Ok(buf)
    }

    /// Encrypts and frames one plaintext.
    pub fn seal(&mut self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let sealed = self
            .write
            .encrypt_with_counter(self.write_counter, plaintext)
            .map_err(|e| anyhow!("encrypt: {e}"))?;
        self.write_counter = self.write_counter.wrapping_add(1);
        encode_frame(&sealed, None)
    }
}

/// Splits the client's bytes into frames, first stripping the connection header.
pub struct Inbound {
    decoder: FrameDecoder,
    header_seen: bool,
    pending: Vec<u8>,
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            decoder: FrameDecoder::new(),
            header_seen: false,
            pending: Vec::new(),
        }
    }
}

impl Inbound {
    pub fn feed(&mut self, data: &[u8]) -> anyhow::Result<()> {
        if self.header_seen {
            self.decoder.feed(data);
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() < WA_CONN_HEADER.len() {
            return Ok(());
        }
        if self.pending[..2] == *b"ED" {
            bail!("edge-routing pre-intro is not supported by this peer");
        }
        if self.pending[..WA_CONN_HEADER.len()] != WA_CONN_HEADER {
            bail!("the connection does not start with the WhatsApp header");
        }
        self.header_seen = true;
        let rest = self.pending.split_off(WA_CONN_HEADER.len());
        self.decoder.feed(&rest);
        self.pending = Vec::new();
        Ok(())
    }

    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.decoder.decode_frame().map(|b| b.to_vec())
    }
}

/// Frames a handshake message (no header on the server side).
pub fn frame(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    encode_frame(bytes, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_noise::{IkHandshakeState, IkServerHelloOutcome, XxHandshakeState};

    fn client_hello_frame(hello: &[u8]) -> Vec<u8> {
        let mut framed = WA_CONN_HEADER.to_vec();
        framed.extend(frame(hello).expect("frame"));
        framed
    }

    fn one_frame(inbound: &mut Inbound, bytes: &[u8]) -> Vec<u8> {
        inbound.feed(bytes).expect("feed");
        inbound.next_frame().expect("a frame")
    }

    /// The client's own handshake code (whatsapp-rust's wacore-noise) against our responder.
    #[test]
    fn the_real_initiator_completes_xx_then_ik_with_us_and_frames_flow_both_ways() {
        let id = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand::rng());

        let mut xx =
            XxHandshakeState::new(client_static.clone(), b"login".to_vec(), &WA_CONN_HEADER)
                .expect("xx");
        let mut inbound = Inbound::default();
        let hello = one_frame(
            &mut inbound,
            &client_hello_frame(&xx.build_client_hello().expect("hello")),
        );
        let Hello::Xx { client_ephemeral } = parse_hello(&hello).expect("parse") else {
            panic!("expected XX");
        };
        let (server_hello, pending) = respond_xx(&id, &client_ephemeral, false).expect("respond");
        let finish = xx
            .read_server_hello_and_build_client_finish(&server_hello)
            .expect("client accepts our hello");
        let mut est = pending.finish(&finish).expect("finish");
        assert_eq!(est.client_payload, b"login");
        assert_eq!(
            &est.client_static[..],
            client_static.public_key.public_key_bytes()
        );
        let out = xx.finish().expect("client keys");
        // Server → client and client → server, two frames each way (counters advance).
        for i in 0..2u32 {
            let sealed = est.transport.seal(b"to client").expect("seal");
            let mut d = FrameDecoder::new();
            d.feed(&sealed);
            let mut body = d.decode_frame().expect("frame").to_vec();
            out.read_cipher
                .decrypt_in_place_with_counter(i, &mut body)
                .expect("client decrypts");
            assert_eq!(body, b"to client");
            let up = out
                .write_cipher
                .encrypt_with_counter(i, b"to server")
                .expect("enc");
            assert_eq!(est.transport.open(&up).expect("open"), b"to server");
        }

        // Reconnect with IK on the cached static.
        let mut server_static = [0u8; 32];
        server_static.copy_from_slice(id.static_kp.public_key.public_key_bytes());
        let mut ik = IkHandshakeState::new(
            client_static.clone(),
            server_static,
            b"again".to_vec(),
            &WA_CONN_HEADER,
        )
        .expect("ik");
        let hello = ik.build_client_hello().expect("ik hello");
        let Hello::Ik {
            client_ephemeral,
            encrypted_static,
            encrypted_payload,
        } = parse_hello(&hello).expect("parse")
        else {
            panic!("expected IK");
        };
        let (server_hello, mut est) = respond_ik(
            &id,
            &client_ephemeral,
            &encrypted_static,
            &encrypted_payload,
        )
        .expect("respond")
        .expect("accepted");
        assert_eq!(est.client_payload, b"again");
        let IkServerHelloOutcome::Continue(out) =
            ik.read_server_hello(&server_hello).expect("read")
        else {
            panic!("client fell back");
        };
        let up = out
            .write_cipher
            .encrypt_with_counter(0, b"ik data")
            .expect("enc");
        assert_eq!(est.transport.open(&up).expect("open"), b"ik data");
    }

    #[test]
    fn an_ik_hello_for_another_static_gets_xx_fallback_the_client_completes() {
        let id = ServerIdentity::generate();
        let stale = KeyPair::generate(&mut rand::rng());
        let mut stale_pub = [0u8; 32];
        stale_pub.copy_from_slice(stale.public_key.public_key_bytes());
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut ik =
            IkHandshakeState::new(client_static, stale_pub, b"p".to_vec(), &WA_CONN_HEADER)
                .expect("ik");
        let hello = ik.build_client_hello().expect("hello");
        let Hello::Ik {
            client_ephemeral,
            encrypted_static,
            encrypted_payload,
        } = parse_hello(&hello).expect("parse")
        else {
            panic!("expected IK");
        };
        assert!(
            respond_ik(
                &id,
                &client_ephemeral,
                &encrypted_static,
                &encrypted_payload
            )
            .expect("no error")
            .is_none()
        );
        let (server_hello, pending) = respond_xx(&id, &client_ephemeral, true).expect("fallback");
        let IkServerHelloOutcome::Fallback(inputs) =
            ik.read_server_hello(&server_hello).expect("read")
        else {
            panic!("client did not fall back");
        };
        let mut fb =
            wacore_noise::XxFallbackHandshakeState::from_ik_failure(*inputs, &WA_CONN_HEADER)
                .expect("fb");
        let finish = fb.build_client_finish().expect("finish");
        let est = pending.finish(&finish).expect("server finish");
        assert_eq!(est.pattern, Pattern::XxFallback);
        assert_eq!(est.client_payload, b"p");
    }
}
