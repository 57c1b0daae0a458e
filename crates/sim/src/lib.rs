//! lifeline-sim: a loopback WebSocket server that misbehaves on purpose. One path per session
//! (`/s/<anything>`); faults on command — drop, drop a fraction, stall (stop answering pings),
//! refuse handshakes with HTTP 503 for a while, slow handshakes, close with a given code — and a
//! count of live sockets per path, so tests can prove Lifeline never holds two for one account.
//!
//! A fault for one path reaches only that path's sockets, so its cost does not grow with the
//! number of live sockets (what a latency benchmark needs). [`Sim::fan_out_faults`] switches to
//! sending every fault to every socket, each deciding whether it applies: the heavier load the
//! chaos soak runs under.

pub mod proxy;
pub mod tiktok;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A fault for live connections. `path: None` means every path.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Drop the TCP connection without a closing handshake.
    Drop { path: Option<String> },
    /// Drop about this fraction (0.0–1.0) of live connections.
    DropFraction(f64),
    /// Keep the socket open but stop answering anything, pings included.
    Stall { path: Option<String> },
    /// Close cleanly with this WebSocket close code.
    Close { path: Option<String>, code: u16 },
}

/// Counters for one path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PathStats {
    pub live: usize,
    /// Highest number of simultaneous live sockets ever seen on this path.
    pub max_live: usize,
    pub accepted: u64,
    /// Connections ended by a fault on the server side (drop, close, stall that the client left).
    pub server_drops: u64,
}

/// What the simulator saw on one path, for the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A WebSocket handshake request arrived (refused ones too).
    Attempt,
    /// The handshake was accepted: a live socket.
    Live,
    /// A live socket ended by a fault on the server side.
    ServerDrop,
    /// The first bytes from the client after its socket was stalled (its next ping).
    StallRead,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: Instant,
    pub path: String,
    pub seen: Seen,
}

#[derive(Debug, Default)]
struct Control {
    paths: HashMap<String, PathStats>,
    /// Each live socket's own fault channel, by path and connection id.
    sockets: HashMap<String, HashMap<u64, mpsc::UnboundedSender<Fault>>>,
    /// Each counted live socket's second handle, by path and connection id: a new socket on a
    /// path looks through it for a client that already left (see [`client_left`]).
    live: HashMap<String, HashMap<u64, std::net::TcpStream>>,
    refuse_until: Option<Instant>,
    handshake_delay: Duration,
    refused: u64,
    /// `Some` while the journal is on.
    journal: Option<Vec<Entry>>,
}

impl Control {
    fn note(&mut self, path: &str, seen: Seen) {
        if let Some(j) = &mut self.journal {
            j.push(Entry {
                at: Instant::now(),
                path: path.to_owned(),
                seen,
            });
        }
    }
}

#[derive(Debug)]
struct Inner {
    control: Mutex<Control>,
    faults: broadcast::Sender<Fault>,
    /// Every fault goes to every socket (see [`Sim::fan_out_faults`]).
    fan_out: AtomicBool,
    next_conn: AtomicU64,
}

impl Inner {
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator. Dropping it stops accepting; [`Sim::shutdown`] also ends live sockets.
#[derive(Debug, Clone)]
pub struct Sim {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: tokio_util_stop::Stop,
}

/// Tiny stop signal (a watch channel), to avoid a dependency for one flag.
mod tokio_util_stop {
    #[derive(Debug, Clone)]
    pub struct Stop(pub tokio::sync::watch::Sender<bool>);
    impl Stop {
        pub fn new() -> Self {
            Self(tokio::sync::watch::channel(false).0)
        }
        pub fn fire(&self) {
            let _ = self.0.send(true);
        }
        pub async fn wait(&self) {
            let mut rx = self.0.subscribe();
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

impl Sim {
    /// Binds `addr` (use `127.0.0.1:0` for a free port) and starts serving.
    pub async fn start(addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (faults, _) = broadcast::channel(256);
        let inner = Arc::new(Inner {
            control: Mutex::new(Control::default()),
            faults,
            fan_out: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
        });
        let stop = tokio_util_stop::Stop::new();
        let sim = Self {
            addr,
            inner: inner.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.wait() => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(serve(inner.clone(), tcp, stop.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sim accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Ok(sim)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/s/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("ws://{}/s/{name}", self.addr)
    }

    pub fn inject(&self, fault: Fault) {
        let target = match &fault {
            Fault::Drop { path } | Fault::Stall { path } | Fault::Close { path, .. } => path,
            Fault::DropFraction(_) => &None,
        };
        match target {
            Some(path) if !self.inner.fan_out.load(Ordering::Relaxed) => {
                let control = self.inner.control();
                for socket in control
                    .sockets
                    .get(path)
                    .into_iter()
                    .flat_map(|s| s.values())
                {
                    let _ = socket.send(fault.clone());
                }
            }
            _ => {
                let _ = self.inner.faults.send(fault);
            }
        }
    }

    /// From now on every fault is sent to every live socket, which checks whether it applies
    /// (the simulator's load then grows with the number of sockets, as under a chaos soak).
    pub fn fan_out_faults(&self) {
        self.inner.fan_out.store(true, Ordering::Relaxed);
    }

    /// Answer handshakes with HTTP 503 for `for_how_long`.
    pub fn refuse_for(&self, for_how_long: Duration) {
        self.inner.control().refuse_until = Some(Instant::now() + for_how_long);
    }

    pub fn stop_refusing(&self) {
        self.inner.control().refuse_until = None;
    }

    /// Wait this long after TCP accept before answering the handshake.
    pub fn set_handshake_delay(&self, delay: Duration) {
        self.inner.control().handshake_delay = delay;
    }

    pub fn stats(&self, path: &str) -> PathStats {
        self.inner
            .control()
            .paths
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    /// Starts counting each path's highest number of simultaneous live sockets afresh, from
    /// the sockets live now (a test checks a phase of its own).
    pub fn reset_max_live(&self) {
        for stats in self.inner.control().paths.values_mut() {
            stats.max_live = stats.live;
        }
    }

    pub fn all_stats(&self) -> HashMap<String, PathStats> {
        self.inner.control().paths.clone()
    }

    /// Handshakes refused with 503 so far.
    pub fn refused(&self) -> u64 {
        self.inner.control().refused
    }

    pub fn total_live(&self) -> usize {
        self.inner.control().paths.values().map(|p| p.live).sum()
    }

    /// Starts keeping a journal of attempts, live sockets, server-side drops and stall reads
    /// (benchmarks and the soak read it; off by default, as it grows with every event).
    pub fn journal_on(&self) {
        self.inner.control().journal.get_or_insert_with(Vec::new);
    }

    /// The journal so far, emptied (empty when the journal is off).
    pub fn take_journal(&self) -> Vec<Entry> {
        self.inner
            .control()
            .journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Stops accepting and ends every live socket.
    pub fn shutdown(&self) {
        self.stop.fire();
    }
}

struct LiveGuard {
    inner: Arc<Inner>,
    path: String,
    id: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut control = self.inner.control();
        // Not counted any more when a newer socket found its client gone already.
        let counted = control
            .live
            .get_mut(&self.path)
            .and_then(|m| m.remove(&self.id))
            .is_some();
        if counted && let Some(p) = control.paths.get_mut(&self.path) {
            p.live = p.live.saturating_sub(1);
        }
    }
}

/// True when the client of a live socket has left already, though its handler has not run since
/// to notice: the end of the stream, or a WebSocket close frame, is waiting unread (possibly
/// behind frames sent before it, such as a keepalive ping). On a loaded machine a client can
/// close, and connect again, before the old socket's handler is scheduled; the old socket is no
/// longer live from the client's side, so it is not counted beside the new.
fn client_left(socket: &std::net::TcpStream) -> bool {
    let mut unread = [0u8; 16 * 1024];
    match socket.peek(&mut unread) {
        Ok(0) => true,
        Ok(n) => has_close_frame(&unread[..n]) || read_closed(socket),
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Whether the client's frames waiting in `unread` include a close frame. Only whole frame
/// headers are read; a frame cut off at the end of the buffer ends the scan.
fn has_close_frame(mut unread: &[u8]) -> bool {
    while let [first, second, rest @ ..] = unread {
        if first & 0x0f == 0x8 {
            return true;
        }
        let (len, rest) = match second & 0x7f {
            126 if rest.len() >= 2 => (u16::from_be_bytes([rest[0], rest[1]]) as u64, &rest[2..]),
            127 if rest.len() >= 8 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&rest[..8]);
                (u64::from_be_bytes(be), &rest[8..])
            }
            126 | 127 => return false,
            short => (u64::from(short), rest),
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        let Some(skip) = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(mask))
            .filter(|&skip| skip <= rest.len())
        else {
            return false;
        };
        unread = &rest[skip..];
    }
    false
}

/// Whether the client has shut its side (its FIN arrived), even with data still unread before
/// it: what `peek` alone cannot tell.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // poll(2) with POLLRDHUP has no safe wrapper in std.
fn read_closed(socket: &std::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd for an open descriptor this function borrows; a zero timeout
    // never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(not(target_os = "linux"))]
fn read_closed(_socket: &std::net::TcpStream) -> bool {
    false
}

/// A socket's own fault channel, registered from its handshake until it ends.
struct Registered {
    inner: Arc<Inner>,
    path: String,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut control = self.inner.control();
        if let Some(sockets) = control.sockets.get_mut(&self.path) {
            sockets.remove(&self.id);
            if sockets.is_empty() {
                control.sockets.remove(&self.path);
            }
        }
    }
}

/// The next fault for one socket: its own, or one sent to every socket (`None`: the simulator is
/// gone).
async fn next_fault(
    all: &mut broadcast::Receiver<Fault>,
    own: &mut mpsc::UnboundedReceiver<Fault>,
) -> Option<Fault> {
    loop {
        tokio::select! {
            f = own.recv() => return f,
            f = all.recv() => match f {
                Ok(f) => return Some(f),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        }
    }
}

fn applies(target: &Option<String>, path: &str) -> bool {
    target.as_deref().is_none_or(|t| t == path)
}

// tungstenite's handshake callback API fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn serve(inner: Arc<Inner>, tcp: TcpStream, stop: tokio_util_stop::Stop) {
    let delay = inner.control().handshake_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    // A second handle on the socket, to look for a client that left (see `client_left`).
    let Ok((tcp, second)) = tcp.into_std().and_then(|std| {
        let second = std.try_clone()?;
        Ok((TcpStream::from_std(std)?, second))
    }) else {
        return;
    };
    // Both fault channels are in place before the handshake's answer goes out: a client that
    // has its socket can be sure any fault sent from then on reaches it.
    let (own_tx, mut own) = mpsc::unbounded_channel();
    let mut faults = inner.faults.subscribe();
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().path().to_owned();
        let mut control = inner.control();
        control.note(&path, Seen::Attempt);
        if control.refuse_until.is_some_and(|u| Instant::now() < u) {
            control.refused += 1;
            let mut refusal = ErrorResponse::new(Some("lifeline-sim: refusing for now".into()));
            *refusal.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Err(refusal);
        }
        control
            .sockets
            .entry(path.clone())
            .or_default()
            .insert(id, own_tx);
        Ok(resp)
    };
    let accepted = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
    let _registered = Registered {
        inner: inner.clone(),
        path: path.clone(),
        id,
    };
    let Ok(mut ws) = accepted else {
        return;
    };
    // A client that gave up on a slow handshake has closed its end already (its FIN is queued
    // behind the request just read): the upgrade reached no one, so it is not a live socket.
    let mut probe = [0u8; 1];
    if let Some(Ok(0)) = ws.get_ref().peek(&mut probe).now_or_never() {
        return;
    }
    {
        let mut control = inner.control();
        let others = control.live.entry(path.clone()).or_default();
        let left: Vec<u64> = others
            .iter()
            .filter(|(_, socket)| client_left(socket))
            .map(|(&other, _)| other)
            .collect();
        for other in &left {
            others.remove(other);
        }
        others.insert(id, second);
        let stats = control.paths.entry(path.clone()).or_default();
        stats.live = stats.live.saturating_sub(left.len()) + 1;
        stats.accepted += 1;
        stats.max_live = stats.max_live.max(stats.live);
        control.note(&path, Seen::Live);
    }
    let _live = LiveGuard {
        inner: inner.clone(),
        path: path.clone(),
        id,
    };
    let server_drop = |inner: &Inner| {
        let mut control = inner.control();
        if let Some(p) = control.paths.get_mut(&path) {
            p.server_drops += 1;
        }
        control.note(&path, Seen::ServerDrop);
    };
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            fault = next_fault(&mut faults, &mut own) => {
                let Some(fault) = fault else { return };
                match fault {
                    Fault::Drop { path: target } if applies(&target, &path) => {
                        server_drop(&inner);
                        return;
                    }
                    Fault::DropFraction(f) => {
                        // Deterministic spread over connection ids.
                        let bucket = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
                        if (bucket as f64) < f * 1024.0 {
                            server_drop(&inner);
                            return;
                        }
                    }
                    Fault::Close { path: target, code } if applies(&target, &path) => {
                        server_drop(&inner);
                        let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static("lifeline-sim") };
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
                        return;
                    }
                    Fault::Stall { path: target } if applies(&target, &path) => {
                        // Read and discard raw bytes: the client's pings go unanswered, and its
                        // eventual close is still noticed so the live count stays true.
                        let mut buf = [0u8; 4096];
                        let mut first_read = true;
                        loop {
                            tokio::select! {
                                _ = stop.wait() => return,
                                n = ws.get_mut().read(&mut buf) => match n {
                                    Ok(0) | Err(_) => {
                                        server_drop(&inner);
                                        return;
                                    }
                                    Ok(_) => {
                                        if std::mem::take(&mut first_read) {
                                            inner.control().note(&path, Seen::StallRead);
                                        }
                                    }
                                },
                            }
                        }
                    }
                    _ => {}
                }
            }
            msg = ws.next() => match msg {
                // Pings are answered by tungstenite while reading; text is echoed.
                Some(Ok(Message::Text(t))) => {
                    if ws.send(Message::Text(t)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame with `opcode` and a payload of `len` bytes.
    fn frame(opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(0x88u8, len));
        f
    }

    #[test]
    fn a_close_frame_is_found_behind_other_frames_and_not_inside_payloads() {
        let ping = frame(0x9, 0);
        let text = frame(0x1, 300);
        let big = frame(0x2, 70_000);
        let close = frame(0x8, 2);
        assert!(has_close_frame(&close));
        assert!(has_close_frame(
            &[ping.clone(), text.clone(), close.clone()].concat()
        ));
        assert!(has_close_frame(&[big.clone(), close.clone()].concat()));
        // Payload bytes equal to a close header are not a close frame.
        assert!(!has_close_frame(&[ping.clone(), text.clone()].concat()));
        assert!(!has_close_frame(&big));
        // A frame cut off by the end of what is buffered ends the scan.
        assert!(!has_close_frame(
            &[ping, text[..10].to_vec(), close].concat()
        ));
        assert!(!has_close_frame(&[0x81]));
        assert!(!has_close_frame(&[]));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_client_that_shut_its_side_has_left_even_with_data_unread() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        assert!(!client_left(&server), "nothing sent yet");
        client.write_all(&frame(0x9, 0)).expect("ping");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.peek(&mut [0u8; 1]).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the ping never arrived"
            );
            std::thread::yield_now();
        }
        assert!(!client_left(&server), "a ping alone is a live client");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        while !client_left(&server) {
            assert!(
                std::time::Instant::now() < deadline,
                "the FIN behind the ping went unseen"
            );
            std::thread::yield_now();
        }
    }
}
