//! Connector for any `ws://` or `wss://` endpoint (tokio-tungstenite). Headers take their values
//! from named secrets; a keepalive ping with a pong deadline detects a stalled peer; close codes
//! and handshake failures become typed reasons the supervisor's policies understand.

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector};
use lifeline_engine::proxy::{self, Target};
use lifeline_engine::secrets::fetch;
use lifeline_engine::state::Reason;
use std::io::ErrorKind;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, Clone, Copy)]
pub struct WebSocketConnector;

impl Connector for WebSocketConnector {
    fn run(
        &self,
        request: ConnectRequest,
        events: mpsc::Sender<ConnEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let id = request.account.id;
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                o = connection(&request, &events, &cancel) => o,
            };
            if let Some((reason, detail)) = outcome {
                tracing::debug!(
                    account = id.0,
                    reason = reason.code(),
                    "websocket connection ended"
                );
                let _ = events.send(ConnEvent::Ended { reason, detail }).await;
            }
        })
    }
}

type Outcome = Option<(Reason, Option<String>)>;

async fn connection(
    request: &ConnectRequest,
    events: &mpsc::Sender<ConnEvent>,
    cancel: &CancellationToken,
) -> Outcome {
    let account = &request.account;
    let Some(url) = account.url.as_deref() else {
        return Some((Reason::Unsupported, Some("the account has no URL".into())));
    };
    let mut http = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Some((Reason::Network, Some(format!("bad URL: {e}")))),
    };
    for header in &account.headers {
        let value = match fetch(request.secrets.clone(), &header.secret).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                return Some((
                    Reason::CredentialsMissing,
                    Some(format!("secret '{}' is not in the keyring", header.secret)),
                ));
            }
            Err(e) => return Some((Reason::CredentialsMissing, Some(e.to_string()))),
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) else {
            return Some((
                Reason::CredentialsMissing,
                Some(format!(
                    "header '{}' cannot carry the value of its secret",
                    header.name
                )),
            ));
        };
        http.headers_mut().insert(name, value);
    }
    let cfg = &request.config;
    // Small buffers: a fleet holds thousands of mostly idle sockets, and tungstenite's defaults
    // (128 KiB read buffer, eagerly allocated, and 128 KiB write batching) are sized for throughput.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20));
    let mut via = None;
    // The handshake futures are boxed: they are several kilobytes, and held inline they would
    // keep this connection's future that large for as long as the socket lives.
    let handshake = if request.route.is_empty() {
        let connect = Box::pin(tokio_tungstenite::connect_async_with_config(
            http,
            Some(ws_config),
            true,
        ));
        match tokio::time::timeout(cfg.connect_timeout(), connect).await {
            Ok(r) => r,
            Err(_) => {
                return Some((
                    Reason::Timeout,
                    Some("no handshake within the connect timeout".into()),
                ));
            }
        }
    } else {
        // Through the account's proxy chain: a tunnel first (each hop bounded by the connect
        // timeout), then TLS and the WebSocket handshake over it.
        let Some(target) = Target::of_url(url) else {
            return Some((Reason::Network, Some(format!("no host in {url}"))));
        };
        let (stream, hop) = match Box::pin(proxy::connect(
            &request.route,
            request.secrets.clone(),
            &target,
            cfg.connect_timeout(),
        ))
        .await
        {
            Ok(ok) => ok,
            Err(e) => return Some((e.reason(), Some(e.to_string()))),
        };
        via = request.route.get(hop).map(|h| format!("via {h}"));
        let upgrade = Box::pin(tokio_tungstenite::client_async_tls_with_config(
            http,
            stream,
            Some(ws_config),
            None,
        ));
        match tokio::time::timeout(cfg.connect_timeout(), upgrade).await {
            Ok(r) => r,
            Err(_) => {
                return Some((
                    Reason::Timeout,
                    Some("no handshake through the proxy within the connect timeout".into()),
                ));
            }
        }
    };
    let (mut ws, _response) = match handshake {
        Err(e) => return Some(classify(&e)),
        Ok(ok) => ok,
    };
    if events.send(ConnEvent::Connected { via }).await.is_err() {
        return None;
    }
    let keepalive = cfg.keepalive();
    let pong_timeout = cfg.pong_timeout();
    let close_wait = cfg.close_timeout() * 3 / 4;
    // One timer: the next ping while the peer is proven alive, the pong deadline after a ping.
    let timer = sleep(keepalive);
    tokio::pin!(timer);
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                // A proper closing handshake: send our close frame, then wait for the server to
                // hang up, so the peer has let go of this socket before a new one is opened
                // (single-flight as the server sees it). Bounded: a dead peer gets 3/4 of the
                // close timeout, after which the supervisor would abort us anyway.
                let _ = tokio::time::timeout(close_wait, async {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                return None;
            }
            _ = &mut timer => {
                if awaiting_pong {
                    return Some((Reason::Stalled, Some(format!("no answer to a ping within {} ms", pong_timeout.as_millis()))));
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return Some(classify(&e));
                }
                awaiting_pong = true;
                timer.as_mut().reset(Instant::now() + pong_timeout);
            }
            msg = ws.next() => match msg {
                None => return Some((Reason::ClosedByPeer { code: None }, Some("connection closed without a close frame".into()))),
                Some(Err(e)) => return Some(classify(&e)),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let detail = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                    return Some((Reason::ClosedByPeer { code }, detail));
                }
                Some(Ok(_)) => {
                    // Any frame proves the peer is alive; a pong also ends the wait.
                    awaiting_pong = false;
                    timer.as_mut().reset(Instant::now() + keepalive);
                    if events.send(ConnEvent::Alive).await.is_err() {
                        return None;
                    }
                }
            },
        }
    }
}

/// Maps a tungstenite error to a typed reason (plus a detail for the event log).
pub fn classify(e: &WsError) -> (Reason, Option<String>) {
    let detail = Some(e.to_string());
    let reason = match e {
        WsError::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => Reason::Refused { status: None },
            ErrorKind::TimedOut => Reason::Timeout,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Reason::ClosedByPeer { code: None },
            _ => Reason::Network,
        },
        WsError::Http(response) => match response.status().as_u16() {
            429 => Reason::RateLimited,
            401 | 403 => Reason::CredentialsMissing,
            status => Reason::Refused {
                status: Some(status),
            },
        },
        WsError::ConnectionClosed | WsError::AlreadyClosed => Reason::ClosedByPeer { code: None },
        WsError::Protocol(p) => {
            use tokio_tungstenite::tungstenite::error::ProtocolError;
            match p {
                ProtocolError::ResetWithoutClosingHandshake
                | ProtocolError::HandshakeIncomplete => Reason::ClosedByPeer { code: None },
                _ => Reason::Network,
            }
        }
        _ => Reason::Network,
    };
    (reason, detail)
}
