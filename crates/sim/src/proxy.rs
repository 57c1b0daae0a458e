//! Loopback proxies (SOCKS5 with optional user/password, HTTP CONNECT with optional Basic auth)
//! so proxy chains can be exercised without the internet: they count tunnels and refused logins,
//! and can be told to go dead (refuse at TCP level by closing their listener).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Socks5,
    HttpConnect,
}

/// Counters of one proxy.
#[derive(Debug, Default)]
struct Counts {
    tunnels: AtomicU64,
    auth_failures: AtomicU64,
}

/// A running loopback proxy. Dropping it (or [`Proxy::stop`]) closes the listener, so new
/// connections are refused like a dead proxy's; open tunnels are cut too.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    kind: ProxyKind,
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
}

impl Proxy {
    /// Starts on 127.0.0.1 (any port). `login` is the `(user, password)` to require, if any.
    pub async fn start(kind: ProxyKind, login: Option<(&str, &str)>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = watch::channel(false);
        let login = login.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let c = counts.clone();
        tokio::spawn(async move {
            let mut stopped_accept = stopped.clone();
            loop {
                let (sock, _) = tokio::select! {
                    _ = stopped_accept.changed() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (c, login, mut stopped) = (c.clone(), login.clone(), stopped.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stopped.changed() => {}
                        _ = serve(kind, sock, login, c) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            kind,
            counts,
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to configure on an account: `socks5://127.0.0.1:port` or `http://…`.
    pub fn url(&self) -> String {
        match self.kind {
            ProxyKind::Socks5 => format!("socks5://{}", self.addr),
            ProxyKind::HttpConnect => format!("http://{}", self.addr),
        }
    }

    /// Tunnels established so far.
    pub fn tunnels(&self) -> u64 {
        self.counts.tunnels.load(Ordering::SeqCst)
    }

    pub fn auth_failures(&self) -> u64 {
        self.counts.auth_failures.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

type Login = Option<(String, String)>;

async fn serve(kind: ProxyKind, mut sock: TcpStream, login: Login, counts: Arc<Counts>) {
    let target = match kind {
        ProxyKind::Socks5 => socks5_handshake(&mut sock, &login, &counts).await,
        ProxyKind::HttpConnect => connect_handshake(&mut sock, &login, &counts).await,
    };
    let Ok(Some(mut upstream)) = target else {
        return;
    };
    counts.tunnels.fetch_add(1, Ordering::SeqCst);
    let _ = tokio::io::copy_bidirectional(&mut sock, &mut upstream).await;
}

/// RFC 1928 (CONNECT only) with RFC 1929 user/password when a login is required.
async fn socks5_handshake(
    sock: &mut TcpStream,
    login: &Login,
    counts: &Counts,
) -> std::io::Result<Option<TcpStream>> {
    let mut head = [0u8; 2];
    sock.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    sock.read_exact(&mut methods).await?;
    let wanted = if login.is_some() { 0x02 } else { 0x00 };
    if head[0] != 5 || !methods.contains(&wanted) {
        sock.write_all(&[5, 0xff]).await?;
        counts.auth_failures.fetch_add(1, Ordering::SeqCst);
        return Ok(None);
    }
    sock.write_all(&[5, wanted]).await?;
    if let Some((user, pass)) = login {
        let mut ver_len = [0u8; 2];
        sock.read_exact(&mut ver_len).await?;
        let mut u = vec![0u8; ver_len[1] as usize];
        sock.read_exact(&mut u).await?;
        let mut plen = [0u8; 1];
        sock.read_exact(&mut plen).await?;
        let mut p = vec![0u8; plen[0] as usize];
        sock.read_exact(&mut p).await?;
        if u != user.as_bytes() || p != pass.as_bytes() {
            sock.write_all(&[1, 1]).await?;
            counts.auth_failures.fetch_add(1, Ordering::SeqCst);
            return Ok(None);
        }
        sock.write_all(&[1, 0]).await?;
    }
    let mut req = [0u8; 4];
    sock.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            sock.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            sock.read_exact(&mut len).await?;
            let mut name = vec![0u8; len[0] as usize];
            sock.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut ip = [0u8; 16];
            sock.read_exact(&mut ip).await?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        _ => return Ok(None),
    };
    let mut port = [0u8; 2];
    sock.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    match TcpStream::connect((host.as_str(), port)).await {
        Ok(up) => {
            sock.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            Ok(Some(up))
        }
        Err(_) => {
            // 0x05: connection refused.
            sock.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            Ok(None)
        }
    }
}

async fn connect_handshake(
    sock: &mut TcpStream,
    login: &Login,
    counts: &Counts,
) -> std::io::Result<Option<TcpStream>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if sock.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (Some("CONNECT"), Some(authority)) = (parts.next(), parts.next()) else {
        sock.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await?;
        return Ok(None);
    };
    if let Some((user, pass)) = login {
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let ok = lines.any(|l| {
            let Some((k, v)) = l.split_once(':') else {
                return false;
            };
            let mut words = v.split_whitespace();
            k.eq_ignore_ascii_case("proxy-authorization")
                && words
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case("basic"))
                && words.next() == Some(expected.as_str())
        });
        if !ok {
            counts.auth_failures.fetch_add(1, Ordering::SeqCst);
            sock.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
            )
            .await?;
            return Ok(None);
        }
    }
    let authority = authority.replace(['[', ']'], "");
    let Some((host, port)) = authority.rsplit_once(':') else {
        sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await?;
        return Ok(None);
    };
    let port: u16 = port.parse().unwrap_or(0);
    match TcpStream::connect((host, port)).await {
        Ok(up) => {
            sock.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await?;
            Ok(Some(up))
        }
        Err(_) => {
            sock.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await?;
            Ok(None)
        }
    }
}
