//! A live's WebSocket feed: heartbeats and acknowledgements as the protocol requires, every
//! message counted into the [`Live`], its counts reported to the engine on a timer.

use std::io::Read as _;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lifeline_engine::connector::{ConnEvent, ConnectRequest};
use lifeline_engine::proxy::{self, Target};
use lifeline_engine::state::Reason;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use crate::api::Join;
use crate::live::Live;
use crate::proto::{FetchResult, PushFrame};

/// The header TikTok sets on a refused handshake to say why.
const HANDSHAKE_MSG: &str = "handshake-msg";
const DEVICE_BLOCKED: &str = "DEVICE_BLOCKED";

/// How a feed ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEnd {
    /// The creator ended the broadcast.
    Ended,
    /// The socket failed or closed while the broadcast may still run.
    Dropped(Reason, Option<String>),
    /// TikTok refuses this device.
    Blocked(String),
    /// The account's connection was asked to close.
    Cancelled,
}

/// Runs the feed until it ends; `live` holds the counts either way.
pub async fn run(
    join: &Join,
    request: &ConnectRequest,
    live: &mut Live,
    report_every: Duration,
    events: &mpsc::Sender<ConnEvent>,
    cancel: &CancellationToken,
) -> FeedEnd {
    let mut http = match join.url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return FeedEnd::Dropped(Reason::Network, Some(format!("bad push URL: {e}"))),
    };
    if let Ok(v) = HeaderValue::from_str(&join.cookie) {
        http.headers_mut().insert("cookie", v);
    }
    let cfg = &request.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(8 << 20));
    let handshake = if request.route.is_empty() {
        let connect = Box::pin(tokio_tungstenite::connect_async_with_config(
            http,
            Some(ws_config),
            false,
        ));
        tokio::time::timeout(cfg.connect_timeout(), connect).await
    } else {
        let Some(target) = Target::of_url(join.url.as_str()) else {
            return FeedEnd::Dropped(Reason::Network, Some("no host in the push URL".into()));
        };
        let stream = match Box::pin(proxy::connect(
            &request.route,
            request.secrets.clone(),
            &target,
            cfg.connect_timeout(),
        ))
        .await
        {
            Ok((s, _)) => s,
            Err(e) => return FeedEnd::Dropped(e.reason(), Some(e.to_string())),
        };
        let upgrade = Box::pin(tokio_tungstenite::client_async_tls_with_config(
            http,
            stream,
            Some(ws_config),
            None,
        ));
        tokio::time::timeout(cfg.connect_timeout(), upgrade).await
    };
    let mut ws = match handshake {
        Err(_) => {
            return FeedEnd::Dropped(
                Reason::Timeout,
                Some("no handshake with the live feed within the connect timeout".into()),
            );
        }
        Ok(Err(WsError::Http(response))) => {
            let msg = response
                .headers()
                .get(HANDSHAKE_MSG)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if msg.contains(DEVICE_BLOCKED) {
                return FeedEnd::Blocked("TikTok blocked this device from joining lives".into());
            }
            let (reason, detail) = lifeline_websocket::classify(&WsError::Http(response));
            return FeedEnd::Dropped(reason, detail);
        }
        Ok(Err(e)) => {
            let (reason, detail) = lifeline_websocket::classify(&e);
            return FeedEnd::Dropped(reason, detail);
        }
        Ok(Ok((ws, _))) => ws,
    };
    if events
        .send(ConnEvent::Connected { via: None })
        .await
        .is_err()
    {
        return FeedEnd::Cancelled;
    }
    let report = |live: &Live| ConnEvent::Session(Box::new(live.session(None)));
    let _ = events.send(report(live)).await;
    // As often as TikTok asks, or as the account's keepalive, whichever is shorter: TikTok
    // answers every heartbeat, which is what proves the feed alive to the health pass.
    let beat = join
        .heartbeat
        .min(cfg.keepalive())
        .max(Duration::from_millis(50));
    let mut heartbeat = tokio::time::interval_at(Instant::now() + beat, beat);
    let mut reporting = tokio::time::interval_at(Instant::now() + report_every, report_every);
    // Three heartbeats without a frame is a stalled feed.
    let silence = beat * 3 + cfg.pong_timeout();
    let stalled = sleep(silence);
    tokio::pin!(stalled);
    let mut reported = live.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tokio::time::timeout(cfg.close_timeout() / 2, ws.close(None)).await;
                return FeedEnd::Cancelled;
            }
            _ = heartbeat.tick() => {
                let hb = PushFrame { payload_type: "hb".into(), ..PushFrame::default() };
                if let Err(e) = ws.send(WsMessage::Binary(hb.encode_to_vec().into())).await {
                    let (reason, detail) = lifeline_websocket::classify(&e);
                    return FeedEnd::Dropped(reason, detail);
                }
            }
            _ = reporting.tick() => {
                if *live != reported {
                    reported = live.clone();
                    let _ = events.send(report(live)).await;
                }
            }
            _ = &mut stalled => {
                return FeedEnd::Dropped(
                    Reason::Stalled,
                    Some(format!("the live feed sent nothing for {} s", silence.as_secs())),
                );
            }
            frame = ws.next() => {
                let data = match frame {
                    None => return FeedEnd::Dropped(Reason::ClosedByPeer { code: None }, Some("the live feed closed".into())),
                    Some(Err(e)) => {
                        let (reason, detail) = lifeline_websocket::classify(&e);
                        return FeedEnd::Dropped(reason, detail);
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        return FeedEnd::Dropped(Reason::ClosedByPeer { code }, frame.map(|f| f.reason.to_string()));
                    }
                    Some(Ok(WsMessage::Binary(data))) => data,
                    Some(Ok(_)) => continue,
                };
                stalled.as_mut().reset(Instant::now() + silence);
                let _ = events.try_send(ConnEvent::Alive);
                let Ok(frame) = PushFrame::decode(data.as_ref()) else {
                    tracing::debug!(account = request.account.id.0, "unreadable live frame skipped");
                    continue;
                };
                if frame.payload_type != "msg" {
                    continue;
                }
                let Some(result) = payload(&frame) else {
                    tracing::debug!(account = request.account.id.0, "unreadable live payload skipped");
                    continue;
                };
                // Counted before the acknowledgement: a server that closes right after its
                // last frame (the broadcast's end) must not cost that frame's messages.
                let mut ended = false;
                for m in &result.messages {
                    ended |= live.apply(m);
                }
                if result.needs_ack && !ended {
                    let ack = PushFrame {
                        log_id: frame.log_id,
                        payload_type: "ack".into(),
                        payload: result.internal_ext.clone().into_bytes(),
                        ..PushFrame::default()
                    };
                    if let Err(e) = ws.send(WsMessage::Binary(ack.encode_to_vec().into())).await {
                        let (reason, detail) = lifeline_websocket::classify(&e);
                        return FeedEnd::Dropped(reason, detail);
                    }
                }
                if ended {
                    let _ = tokio::time::timeout(cfg.close_timeout() / 2, ws.close(None)).await;
                    return FeedEnd::Ended;
                }
            }
        }
    }
}

/// A `msg` frame's messages, gunzipped when the frame says so.
fn payload(frame: &PushFrame) -> Option<FetchResult> {
    let gzip = frame.payload_encoding == "gzip"
        || frame
            .headers
            .get("compress_type")
            .is_some_and(|v| v == "gzip");
    if gzip {
        let mut out = Vec::new();
        // Bounded: a frame cannot inflate past 16 MiB.
        flate2::read::GzDecoder::new(frame.payload.as_slice())
            .take(16 << 20)
            .read_to_end(&mut out)
            .ok()?;
        FetchResult::decode(out.as_slice()).ok()
    } else {
        FetchResult::decode(frame.payload.as_slice()).ok()
    }
}
