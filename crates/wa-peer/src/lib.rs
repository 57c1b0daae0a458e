//! lifeline-wa-peer: a loopback server that speaks enough of WhatsApp's protocol for the real
//! whatsapp-rust client to link, connect, stay alive and be thrown out in every way the real
//! service does, so Lifeline's WhatsApp path is testable (and demonstrable) with no phone and no
//! internet. Built on the protocol crates whatsapp-rust itself publishes.
//!
//! The client must be built with `danger-skip-cert-chain-verify` (test and dev builds only): the
//! peer's certificate chain cannot carry WhatsApp's signatures.

mod noise;
mod phone;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use buffa::Message as _;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;
use waproto::whatsapp as wa;

pub use noise::Pattern;
use noise::{Established, Hello, Inbound, ServerIdentity, Transport};

/// A way the service throws a session out (or lets it die).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// `<stream:error code="515">`: log in again now.
    RestartRequired,
    /// Another client took the number: `<stream:error><conflict type="replaced"/>`.
    Replaced,
    /// The phone removed this device: `<stream:error code="401">`; later logins fail with 401.
    LoggedOut,
    /// Temporary ban: the live session is cut and logins fail with 402 until it expires.
    Banned { code: u16, expire_secs: u64 },
    /// This client version is refused: logins fail with 405.
    Outdated,
    /// Cut the TCP connection without a word.
    Close,
    /// Keep the socket open but answer nothing, pings included.
    Stall,
}

/// Counters for tests and the demo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub connections: u64,
    pub xx: u64,
    pub ik: u64,
    pub xx_fallback: u64,
    pub registrations: u64,
    pub qr_refs: u64,
    pub pairings: u64,
    pub logins: u64,
    pub refused_logins: u64,
    pub pings: u64,
    /// Connections dropped at once by `refuse_for`.
    pub refused_connections: u64,
    /// Logins answered with an unreadable frame (`garble_logins`).
    pub garbled_logins: u64,
}

/// Per-peer behaviour.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refs handed out per linking session (WhatsApp sends 6; 0 makes the client give up at once).
    pub qr_refs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { qr_refs: 6 }
    }
}

#[derive(Debug, Default)]
struct Device {
    noise: Option<[u8; 32]>,
    removed: bool,
    banned: Option<(u16, i64)>,
    /// The client has been told of the running ban (a live session cut by it, or a login
    /// refused with it): from then on it has no reason to try before the ban ends.
    ban_told: bool,
    outdated: bool,
}

#[derive(Debug)]
struct Live {
    user: Option<String>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
enum Command {
    Send(Node),
    Fault(Fault),
    /// The operator typed the pair code shown by the device into the phone.
    EnterCode(String),
}

/// What the service saw of one number: what a fleet's invariants are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NumberStats {
    /// Accepted logins.
    pub logins: u64,
    /// Logins refused (logged out, banned, outdated, wrong keys).
    pub refused_logins: u64,
    /// The most sessions this number had logged in at once.
    pub max_concurrent: u64,
    /// Login attempts while a ban the client had been told of was running.
    pub connects_while_banned: u64,
    /// Live sessions the service ended (every fault but a stall).
    pub server_cuts: u64,
    /// When a login first found another session of the number still logged in.
    #[serde(skip)]
    pub first_overlap: Option<std::time::Instant>,
}

/// Misbehaviour applied to every new connection while it is set (see the `Peer` methods).
#[derive(Debug, Default)]
struct Chaos {
    refuse_until: Option<std::time::Instant>,
    handshake_delay: std::time::Duration,
    login_delay: std::time::Duration,
    /// Fraction (0..=1) of logins answered with a frame the client cannot read.
    garble: f64,
}

#[derive(Debug, Default)]
struct State {
    devices: HashMap<String, Device>,
    numbers: HashMap<String, NumberStats>,
    chaos: Chaos,
    live: HashMap<u64, Live>,
    /// Refs handed out, to the connection waiting on them.
    refs: HashMap<String, u64>,
    /// Phone numbers being paired by code, to the connection that asked.
    code_pairings: HashMap<String, u64>,
    stats: Stats,
    login_times: Vec<std::time::Instant>,
    next_user: u64,
}

struct Inner {
    identity: ServerIdentity,
    config: Config,
    state: Mutex<State>,
    next_conn: AtomicU64,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running peer. Dropping every clone does not stop it; [`Peer::shutdown`] does.
#[derive(Clone)]
pub struct Peer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("addr", &self.addr).finish()
    }
}

impl Peer {
    pub async fn start(addr: &str, config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            identity: ServerIdentity::generate(),
            config,
            state: Mutex::new(State {
                next_user: 628_120_000_000,
                ..State::default()
            }),
            next_conn: AtomicU64::new(1),
        });
        let (stop, mut stopped) = watch::channel(false);
        let accept_inner = inner.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stopped.changed() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let inner = accept_inner.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let id = inner.next_conn.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = connection(inner.clone(), id, tcp, stopped).await {
                        tracing::debug!(conn = id, error = %e, "peer connection ended");
                    }
                    let mut st = inner.state();
                    st.live.remove(&id);
                    st.refs.retain(|_, c| *c != id);
                    st.code_pairings.retain(|_, c| *c != id);
                });
            }
        });
        Ok(Self { addr, inner, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to point the client at (`LIFELINE_WHATSAPP_URL`).
    pub fn url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// Plays the phone scanning `qr`: links the device waiting on that code as a new number and
    /// returns the number. Errors when no connection is waiting on the code.
    pub fn scan(&self, qr: &str) -> anyhow::Result<String> {
        let scanned = phone::parse_qr(qr)?;
        let mut st = self.inner.state();
        let conn = *st
            .refs
            .get(&scanned.pairing_ref)
            .ok_or_else(|| anyhow!("no device is showing this code (expired or already used)"))?;
        let user = st.next_user.to_string();
        st.next_user += 1;
        let node = phone::pair_success(&format!("ps-{conn}"), &scanned, &user, 1)?;
        let live = st
            .live
            .get_mut(&conn)
            .ok_or_else(|| anyhow!("the device showing this code is gone"))?;
        live.user = Some(user.clone());
        live.commands
            .send(Command::Send(node))
            .map_err(|_| anyhow!("the device showing this code is gone"))?;
        st.refs.retain(|_, c| *c != conn);
        st.devices.entry(user.clone()).or_default().noise = Some(scanned.noise_pub);
        Ok(user)
    }

    /// Plays the operator typing the device's pair code into the phone of `phone` (digits, `+`
    /// and spaces allowed). The device then completes the link by itself.
    pub fn enter_code(&self, phone: &str, code: &str) -> anyhow::Result<()> {
        let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
        let st = self.inner.state();
        let conn = st
            .code_pairings
            .get(&phone)
            .ok_or_else(|| anyhow!("no device is pairing with {phone} by code"))?;
        st.live
            .get(conn)
            .and_then(|l| l.commands.send(Command::EnterCode(code.to_owned())).ok())
            .ok_or_else(|| anyhow!("the device pairing with {phone} is gone"))
    }

    /// Applies a fault to a number: its live sessions get it now; bans, logouts and outdated
    /// also shape its next logins. Returns how many live sessions were hit.
    pub fn inject(&self, user: &str, fault: Fault) -> usize {
        let mut st = self.inner.state();
        let device = st.devices.entry(user.to_owned()).or_default();
        match fault {
            Fault::LoggedOut => device.removed = true,
            Fault::Banned { code, expire_secs } => {
                device.banned = Some((code, phone::now_secs() + expire_secs as i64));
                device.ban_told = false;
            }
            Fault::Outdated => device.outdated = true,
            _ => {}
        }
        let mut hit = 0;
        for live in st.live.values() {
            if live.user.as_deref() == Some(user)
                && live.commands.send(Command::Fault(fault)).is_ok()
            {
                hit += 1;
            }
        }
        hit
    }

    /// The phone removes this number's device while no session of it hears so: its next login
    /// is refused with 401 (as after a link whose phone dropped the device at once).
    pub fn remove_device(&self, user: &str) {
        self.inner
            .state()
            .devices
            .entry(user.to_owned())
            .or_default()
            .removed = true;
    }

    /// Lifts a ban or an "outdated" verdict (a removed device stays removed).
    pub fn pardon(&self, user: &str) {
        if let Some(d) = self.inner.state().devices.get_mut(user) {
            d.banned = None;
            d.outdated = false;
        }
    }

    /// Live logged-in sessions of a number.
    pub fn live_sessions(&self, user: &str) -> usize {
        self.inner
            .state()
            .live
            .values()
            .filter(|l| l.user.as_deref() == Some(user))
            .count()
    }

    /// Numbers linked through this peer or seen logging in.
    pub fn numbers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.state().devices.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn stats(&self) -> Stats {
        self.inner.state().stats.clone()
    }

    /// When each accepted login happened (for pacing checks).
    pub fn login_times(&self) -> Vec<std::time::Instant> {
        self.inner.state().login_times.clone()
    }

    /// Applies a fault to every live logged-in session at once (a mass drop). Returns how many.
    pub fn inject_all(&self, fault: Fault) -> usize {
        let users: Vec<String> = {
            let st = self.inner.state();
            let mut u: Vec<String> = st.live.values().filter_map(|l| l.user.clone()).collect();
            u.sort();
            u.dedup();
            u
        };
        users.iter().map(|u| self.inject(u, fault)).sum()
    }

    /// Applies a fault to each logged-in number with probability `fraction` (0..=1). Returns
    /// the numbers hit.
    pub fn inject_fraction(&self, fault: Fault, fraction: f64) -> Vec<String> {
        let users: Vec<String> = {
            let st = self.inner.state();
            let mut u: Vec<String> = st.live.values().filter_map(|l| l.user.clone()).collect();
            u.sort();
            u.dedup();
            u
        };
        users
            .into_iter()
            .filter(|_| rand::random::<f64>() < fraction)
            .filter(|u| self.inject(u, fault) > 0)
            .collect()
    }

    /// Ends every connection that is in the middle of linking (showing codes, or pairing by
    /// code): the service going away under a device being linked. Returns how many.
    pub fn drop_linking(&self) -> usize {
        let st = self.inner.state();
        st.live
            .values()
            .filter(|l| l.user.is_none())
            .filter(|l| l.commands.send(Command::Fault(Fault::Close)).is_ok())
            .count()
    }

    /// For `d`, every new connection is closed as soon as it is accepted (the service refusing
    /// connections).
    pub fn refuse_for(&self, d: std::time::Duration) {
        self.inner.state().chaos.refuse_until = Some(std::time::Instant::now() + d);
    }

    /// Waits this long before answering each new connection's handshake (zero: at once).
    pub fn set_handshake_delay(&self, d: std::time::Duration) {
        self.inner.state().chaos.handshake_delay = d;
    }

    /// Waits this long before answering each login (zero: at once).
    pub fn set_login_delay(&self, d: std::time::Duration) {
        self.inner.state().chaos.login_delay = d;
    }

    /// Answers this fraction (0..=1) of logins with a frame the client cannot decrypt.
    pub fn garble_logins(&self, fraction: f64) {
        self.inner.state().chaos.garble = fraction.clamp(0.0, 1.0);
    }

    /// Ends every misbehaviour set by `refuse_for`, the delays and `garble_logins`.
    pub fn calm(&self) {
        self.inner.state().chaos = Chaos::default();
    }

    /// What the service saw of each number.
    pub fn number_stats(&self) -> HashMap<String, NumberStats> {
        self.inner.state().numbers.clone()
    }

    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn send_frame(ws: &mut Ws, bytes: Vec<u8>) -> anyhow::Result<()> {
    ws.send(Message::binary(bytes)).await.context("send")
}

/// Next binary message from the client (None: it went away).
async fn recv(ws: &mut Ws) -> anyhow::Result<Option<Vec<u8>>> {
    while let Some(msg) = ws.next().await {
        match msg.context("read")? {
            Message::Binary(b) => return Ok(Some(b.to_vec())),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

async fn next_frame(ws: &mut Ws, inbound: &mut Inbound) -> anyhow::Result<Option<Vec<u8>>> {
    loop {
        if let Some(f) = inbound.next_frame() {
            return Ok(Some(f));
        }
        match recv(ws).await? {
            Some(data) => inbound.feed(&data)?,
            None => return Ok(None),
        }
    }
}

async fn handshake(
    inner: &Inner,
    ws: &mut Ws,
    inbound: &mut Inbound,
) -> anyhow::Result<Option<Established>> {
    let Some(hello) = next_frame(ws, inbound).await? else {
        return Ok(None);
    };
    let id = &inner.identity;
    let pending = match noise::parse_hello(&hello)? {
        Hello::Xx { client_ephemeral } => {
            let (reply, pending) = noise::respond_xx(id, &client_ephemeral, false)?;
            send_frame(ws, noise::frame(&reply)?).await?;
            pending
        }
        Hello::Ik {
            client_ephemeral,
            encrypted_static,
            encrypted_payload,
        } => match noise::respond_ik(id, &client_ephemeral, &encrypted_static, &encrypted_payload)?
        {
            Some((reply, est)) => {
                send_frame(ws, noise::frame(&reply)?).await?;
                return Ok(Some(est));
            }
            None => {
                let (reply, pending) = noise::respond_xx(id, &client_ephemeral, true)?;
                send_frame(ws, noise::frame(&reply)?).await?;
                pending
            }
        },
    };
    let Some(finish) = next_frame(ws, inbound).await? else {
        return Ok(None);
    };
    pending.finish(&finish).map(Some)
}

/// One client connection, from WebSocket upgrade to close.
async fn connection(
    inner: Arc<Inner>,
    id: u64,
    tcp: TcpStream,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let handshake_delay = {
        let mut st = inner.state();
        st.stats.connections += 1;
        if st
            .chaos
            .refuse_until
            .is_some_and(|u| std::time::Instant::now() < u)
        {
            st.stats.refused_connections += 1;
            return Ok(());
        }
        st.chaos.handshake_delay
    };
    if !handshake_delay.is_zero() {
        tokio::time::sleep(handshake_delay).await;
    }
    let mut ws = tokio_tungstenite::accept_async(tcp)
        .await
        .context("upgrade")?;
    let mut inbound = Inbound::default();
    let Some(est) = handshake(&inner, &mut ws, &mut inbound).await? else {
        return Ok(());
    };
    {
        let mut st = inner.state();
        match est.pattern {
            Pattern::Xx => st.stats.xx += 1,
            Pattern::Ik => st.stats.ik += 1,
            Pattern::XxFallback => st.stats.xx_fallback += 1,
        }
    }
    let payload = wa::ClientPayload::decode_from_slice(&est.client_payload)
        .map_err(|e| anyhow!("client payload: {e}"))?;
    let (tx, mut commands) = mpsc::unbounded_channel();
    let mut session = Session {
        id,
        transport: est.transport,
        ws,
        stalled: false,
        pairing: None,
        client_static: est.client_static,
        code: None,
    };
    if payload.device_pairing_data.is_set() {
        let refs: Vec<String> = (0..inner.config.qr_refs)
            .map(|i| format!("2@peer{id}r{i}x{:016x}", rand::random::<u64>()))
            .collect();
        {
            let mut st = inner.state();
            st.stats.registrations += 1;
            st.stats.qr_refs += refs.len() as u64;
            for r in &refs {
                st.refs.insert(r.clone(), id);
            }
            st.live.insert(
                id,
                Live {
                    user: None,
                    commands: tx,
                },
            );
        }
        let iq = NodeBuilder::new("iq")
            .attr("from", "s.whatsapp.net")
            .attr("type", "set")
            .attr("id", format!("pd-{id}"))
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-device")
                .children(
                    refs.into_iter()
                        .map(|r| NodeBuilder::new("ref").bytes(r.into_bytes()).build()),
                )
                .build()])
            .build();
        session.send(&iq).await?;
    } else {
        let user = payload
            .username
            .map(|u| u.to_string())
            .ok_or_else(|| anyhow!("login without a username"))?;
        let login_delay = inner.state().chaos.login_delay;
        if !login_delay.is_zero() {
            // A client that gives up meanwhile is gone before its login is accepted, as a real
            // server sees it: its socket never counts as a logged-in session.
            let wait = tokio::time::sleep(login_delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    msg = session.ws.next() => match msg {
                        Some(Ok(Message::Binary(b))) => inbound.feed(&b)?,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(()),
                        Some(Ok(_)) => {}
                    },
                }
            }
        }
        let (refusal, garble) = {
            let mut st = inner.state();
            let garble_roll = st.chaos.garble > 0.0 && rand::random::<f64>() < st.chaos.garble;
            let device = st.devices.entry(user.clone()).or_default();
            let now = phone::now_secs();
            let banned = device.banned.is_some_and(|(_, until)| until > now);
            let told = banned && device.ban_told;
            // The 402 below tells it (a removed device hears 401 instead).
            if banned && !device.removed {
                device.ban_told = true;
            }
            let refusal = if device.removed {
                Some(failure("401", None))
            } else if let Some((code, until)) = device.banned.filter(|(_, until)| *until > now) {
                Some(failure("402", Some((code, until - now))))
            } else if device.outdated {
                Some(failure("405", None))
            } else if device.noise.is_some_and(|n| n != est.client_static) {
                Some(failure("401", None))
            } else {
                device.noise = Some(est.client_static);
                None
            };
            // Only an answer that would have let it in is garbled.
            let garble = refusal.is_none() && garble_roll;
            let refused = refusal.is_some() || garble;
            if refused {
                st.stats.refused_logins += 1;
                st.stats.garbled_logins += u64::from(garble);
            } else {
                st.stats.logins += 1;
                st.login_times.push(std::time::Instant::now());
                st.live.insert(
                    id,
                    Live {
                        user: Some(user.clone()),
                        commands: tx,
                    },
                );
            }
            let concurrent = st
                .live
                .values()
                .filter(|l| l.user.as_deref() == Some(user.as_str()))
                .count() as u64;
            let number = st.numbers.entry(user.clone()).or_default();
            number.connects_while_banned += u64::from(told);
            if refused {
                number.refused_logins += 1;
            } else {
                number.logins += 1;
                number.max_concurrent = number.max_concurrent.max(concurrent);
                if concurrent > 1 && number.first_overlap.is_none() {
                    number.first_overlap = Some(std::time::Instant::now());
                }
            }
            (refusal, garble)
        };
        if garble {
            // A login answer nobody can read: bytes that fail the transport's authentication.
            let junk: Vec<u8> = (0..48).map(|_| rand::random::<u8>()).collect();
            send_frame(&mut session.ws, noise::frame(&junk)?).await?;
            let _ = session.ws.close(None).await;
            return Ok(());
        }
        if let Some(node) = refusal {
            session.send(&node).await?;
            let _ = session.ws.close(None).await;
            return Ok(());
        }
        let success = NodeBuilder::new("success")
            .attr("t", phone::now_secs().to_string())
            .attr("lid", format!("{}@lid", phone::lid_of(&user)))
            .build();
        session.send(&success).await?;
        let offline = NodeBuilder::new("ib")
            .attr("from", "s.whatsapp.net")
            .children([NodeBuilder::new("offline").attr("count", "0").build()])
            .build();
        session.send(&offline).await?;
    }
    loop {
        tokio::select! {
            _ = stopped.changed() => return Ok(()),
            cmd = commands.recv() => match cmd {
                None => return Ok(()),
                Some(Command::Send(node)) => {
                    if node.get_optional_child("pair-success").is_some() {
                        session.pairing = Some(node.attrs().optional_string("id").map(|s| s.into_owned()).unwrap_or_default());
                    }
                    session.send(&node).await?;
                }
                Some(Command::Fault(f)) => {
                    if !session.fault(f).await? {
                        // Counted as it happens: a fault sent to a session that ended meanwhile
                        // cut nothing and told nobody.
                        let mut st = inner.state();
                        if let Some(user) = st.live.get(&id).and_then(|l| l.user.clone()) {
                            if matches!(f, Fault::Banned { .. })
                                && let Some(d) = st.devices.get_mut(&user)
                            {
                                d.ban_told = true;
                            }
                            st.numbers.entry(user).or_default().server_cuts += 1;
                        }
                        return Ok(());
                    }
                }
                Some(Command::EnterCode(code)) => {
                    let id = format!("lc-{id}");
                    let hello = session
                        .code
                        .as_mut()
                        .ok_or_else(|| anyhow!("no code pairing on this connection"))
                        .and_then(|c| c.enter_code(&code, &id));
                    match hello {
                        Ok(node) => session.send(&node).await?,
                        Err(e) => tracing::warn!(conn = session.id, error = %e, "pair code not accepted"),
                    }
                }
            },
            msg = session.ws.next() => {
                let data = match msg {
                    None => return Ok(()),
                    Some(m) => match m.context("read")? {
                        Message::Binary(b) => b.to_vec(),
                        Message::Close(_) => return Ok(()),
                        _ => continue,
                    },
                };
                inbound.feed(&data)?;
                while let Some(frame) = inbound.next_frame() {
                    let plain = session.transport.open(&frame)?;
                    let body = wacore_binary::util::unpack(&plain).map_err(|e| anyhow!("unpack: {e}"))?;
                    let node = wacore_binary::marshal::unmarshal_ref(&body)
                        .map_err(|e| anyhow!("unmarshal: {e}"))?
                        .to_owned();
                    if !session.on_node(&inner, &node).await? {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn failure(reason: &str, ban: Option<(u16, i64)>) -> Node {
    let mut b = NodeBuilder::new("failure").attr("reason", reason);
    if let Some((code, secs)) = ban {
        b = b
            .attr("code", code.to_string())
            .attr("expire", secs.max(1).to_string());
    }
    b.build()
}

struct Session {
    id: u64,
    transport: Transport,
    ws: Ws,
    stalled: bool,
    /// The id of a pair-success sent, until the client signs it.
    pairing: Option<String>,
    client_static: [u8; 32],
    /// Pairing by phone code in progress.
    code: Option<phone::CodePairing>,
}

impl Session {
    async fn send(&mut self, node: &Node) -> anyhow::Result<()> {
        let plain = wacore_binary::marshal::marshal(node).map_err(|e| anyhow!("marshal: {e}"))?;
        let framed = self.transport.seal(&plain)?;
        send_frame(&mut self.ws, framed).await
    }

    /// Returns false when the connection should end.
    async fn fault(&mut self, fault: Fault) -> anyhow::Result<bool> {
        let stream_error = |code: Option<&str>, child: Option<Node>| {
            let mut b = NodeBuilder::new("stream:error");
            if let Some(c) = code {
                b = b.attr("code", c);
            }
            if let Some(c) = child {
                b = b.children([c]);
            }
            b.build()
        };
        let node = match fault {
            Fault::Stall => {
                self.stalled = true;
                return Ok(true);
            }
            Fault::Close => return Ok(false),
            Fault::RestartRequired => stream_error(Some("515"), None),
            Fault::Replaced => stream_error(
                None,
                Some(
                    NodeBuilder::new("conflict")
                        .attr("type", "replaced")
                        .build(),
                ),
            ),
            Fault::LoggedOut => stream_error(Some("401"), None),
            Fault::Banned { code, expire_secs } => failure("402", Some((code, expire_secs as i64))),
            Fault::Outdated => failure("405", None),
        };
        self.send(&node).await?;
        let _ = self.ws.close(None).await;
        Ok(false)
    }

    /// The device's side of pairing by phone code: its hello (answered with a ref, after which
    /// it shows the code) and its finish (answered with the pair-success).
    async fn on_code_pairing(
        &mut self,
        inner: &Inner,
        id: &str,
        reg: &Node,
    ) -> anyhow::Result<bool> {
        let bytes = |tag: &str| -> Vec<u8> {
            match reg.get_optional_child(tag).and_then(|n| n.content.as_ref()) {
                Some(wacore_binary::node::NodeContent::Bytes(b)) => b.clone(),
                _ => Vec::new(),
            }
        };
        let mut attrs = reg.attrs();
        let stage = attrs
            .optional_string("stage")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let result = NodeBuilder::new("iq")
            .attr("from", "s.whatsapp.net")
            .attr("type", "result")
            .attr("id", id);
        match stage.as_str() {
            "companion_hello" => {
                let phone: String = attrs
                    .optional_string("jid")
                    .map(|j| j.split('@').next().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                let pairing_ref =
                    format!("lc{}x{:016x}", self.id, rand::random::<u64>()).into_bytes();
                self.code = Some(phone::CodePairing::new(
                    phone.clone(),
                    pairing_ref.clone(),
                    self.client_static,
                    bytes("link_code_pairing_wrapped_companion_ephemeral_pub"),
                ));
                inner.state().code_pairings.insert(phone, self.id);
                let reply = result
                    .children([NodeBuilder::new("link_code_companion_reg")
                        .children([NodeBuilder::new("link_code_pairing_ref")
                            .bytes(pairing_ref)
                            .build()])
                        .build()])
                    .build();
                self.send(&reply).await?;
            }
            "companion_finish" => {
                self.send(&result.build()).await?;
                let Some(code) = &self.code else {
                    return Ok(true);
                };
                match code.finish(
                    &bytes("link_code_pairing_wrapped_key_bundle"),
                    &bytes("companion_identity_public"),
                ) {
                    Ok(scanned) => {
                        let user = code.phone.clone();
                        let ps_id = format!("ps-{}", self.id);
                        let node = phone::pair_success(&ps_id, &scanned, &user, 1)?;
                        {
                            let mut st = inner.state();
                            st.devices.entry(user.clone()).or_default().noise =
                                Some(self.client_static);
                            if let Some(live) = st.live.get_mut(&self.id) {
                                live.user = Some(user);
                            }
                            st.code_pairings.retain(|_, c| *c != self.id);
                        }
                        self.pairing = Some(ps_id);
                        self.send(&node).await?;
                    }
                    Err(e) => tracing::warn!(conn = self.id, error = %e, "pairing by code failed"),
                }
            }
            _ => self.send(&result.build()).await?,
        }
        Ok(true)
    }

    /// Answers one client node. Returns false when the connection should end.
    async fn on_node(&mut self, inner: &Inner, node: &Node) -> anyhow::Result<bool> {
        if self.stalled || node.tag != "iq" {
            return Ok(true);
        }
        let mut attrs = node.attrs();
        let id = attrs
            .optional_string("id")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let kind = attrs
            .optional_string("type")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let xmlns = attrs
            .optional_string("xmlns")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        if kind == "result" && node.get_optional_child("pair-device-sign").is_some() {
            if self.pairing.as_deref() == Some(id.as_str()) {
                inner.state().stats.pairings += 1;
                // Linked: the client must log in again on a fresh connection.
                self.send(&NodeBuilder::new("stream:error").attr("code", "515").build())
                    .await?;
                let _ = self.ws.close(None).await;
                return Ok(false);
            }
            return Ok(true);
        }
        if kind != "get" && kind != "set" {
            return Ok(true);
        }
        if let Some(reg) = node.get_optional_child("link_code_companion_reg") {
            return self.on_code_pairing(inner, &id, reg).await;
        }
        let mut reply = NodeBuilder::new("iq")
            .attr("from", "s.whatsapp.net")
            .attr("type", "result")
            .attr("id", id);
        if xmlns == "w:p" {
            inner.state().stats.pings += 1;
            reply = reply.attr("t", phone::now_secs().to_string());
        } else if xmlns == "w:sync:app:state" {
            // Every collection "conflict, nothing more": the client counts them as synced.
            let collections: Vec<Node> = node
                .get_optional_child("sync")
                .map(|s| {
                    s.get_children_by_tag("collection")
                        .filter_map(|c| c.attrs().optional_string("name").map(|n| n.into_owned()))
                        .map(|name| {
                            NodeBuilder::new("collection")
                                .attr("name", name)
                                .attr("type", "error")
                                .children([NodeBuilder::new("error").attr("code", "409").build()])
                                .build()
                        })
                        .collect()
                })
                .unwrap_or_default();
            reply = reply.children([NodeBuilder::new("sync").children(collections).build()]);
        }
        self.send(&reply.build()).await?;
        Ok(true)
    }
}
