//! Connector for WhatsApp numbers over whatsapp-rust (pure Rust multi-device client).
//!
//! Library facts this relies on (whatsapp-rust 0.7.0, read from its source):
//! - `Bot::builder().with_backend(SqliteStore::new(path))…build()` then `spawn()` runs the client;
//!   `BotHandle::shutdown()` disconnects and waits; dropping the handle aborts it.
//! - The client reconnects by itself unless `client.enable_auto_reconnect` is set to false; we set
//!   it false before spawning, so the engine's backoff, breaker and pacing are the only policy. With
//!   it off, a failed transport connect ends `run()` without any event: we report that as `network`.
//! - QR codes arrive one `PairingQrCode{code, timeout}` event each (first ≈60 s, later ≈20 s);
//!   `PairingQrCodesExhausted` ends the bot. Phone pairing: `with_pair_code(PairCodeOptions)`
//!   emits `PairingCode{code, timeout}` (≈180 s).
//! - Logout does not wipe keys: on `LoggedOut` (or a logged-out connect failure) we delete the
//!   device store ourselves, so the next link starts clean.
//! - The endpoint can be overridden (`TokioWebSocketTransportFactory::with_url`), and
//!   `with_version` avoids the HTTP version fetch: that is how tests reach 127.0.0.1.
//! - Proxies: the library's transport dials directly, but any `TransportFactory` may hand it an
//!   upgraded `tokio_websockets` stream through `from_websocket`; we tunnel (SOCKS5 / CONNECT),
//!   wrap with its `default_tls_connector()` and upgrade with the WhatsApp Web `Origin`. The
//!   HTTP client (version check, media) takes a ureq agent with the same proxy
//!   (`UreqHttpClient::with_agent`).

pub mod device;
pub mod mapping;
pub mod transport;

/// True in builds that accept the offline protocol peer's unsigned certificates (feature
/// `test-peer`): such a build must never talk to real WhatsApp, and says so.
pub const TEST_PEER_BUILD: bool = cfg!(feature = "test-peer");

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector, LinkMode};
use lifeline_engine::model::{Account, AccountKind};
use lifeline_engine::proxy::{self, Target};
use lifeline_engine::state::Reason;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use transport::{LifelineTransport, Routed};
use whatsapp_rust::http::UreqHttpClient;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::{Bot, BotHandle};
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::wacore::net::WHATSAPP_WEB_WS_URL;
use whatsapp_rust::wacore::types::events::{Event, EventHandler};

use mapping::Mapped;

/// How the connector reaches WhatsApp.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// Override of WhatsApp's WebSocket URL (tests and the offline peer: `ws://127.0.0.1:…`).
    pub url: Option<String>,
    /// Client version to announce; `None` fetches the current one over HTTP.
    pub version: Option<(u32, u32, u32)>,
}

impl Endpoint {
    /// WhatsApp's own servers, unless `LIFELINE_WHATSAPP_URL` points elsewhere (the offline
    /// protocol peer, tests); such a URL also pins the announced version so no HTTP is needed.
    pub fn from_env() -> Self {
        let url = std::env::var("LIFELINE_WHATSAPP_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let version = url.as_ref().map(|_| (2, 3000, 1_000_000_000));
        Self { url, version }
    }
}

#[derive(Debug, Clone)]
pub struct WhatsAppConnector {
    data_dir: PathBuf,
    endpoint: Endpoint,
}

impl WhatsAppConnector {
    /// Device stores go under `data_dir/whatsapp/`.
    pub fn new(data_dir: impl Into<PathBuf>, endpoint: Endpoint) -> Self {
        Self {
            data_dir: data_dir.into(),
            endpoint,
        }
    }
}

/// Forwards library events into our channel without blocking the client.
struct Forward(mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(event);
    }
}

impl Connector for WhatsAppConnector {
    fn run(
        &self,
        request: ConnectRequest,
        events: mpsc::Sender<ConnEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            if let Some((reason, detail)) = this.connection(request, &events, &cancel).await {
                let _ = events.send(ConnEvent::Ended { reason, detail }).await;
            }
        })
    }

    fn forget(&self, account: &Account) -> lifeline_engine::Result<()> {
        if account.kind != AccountKind::Whatsapp {
            return Ok(());
        }
        let db = device::path(&self.data_dir, account.id);
        device::wipe(&db).map_err(|source| lifeline_engine::Error::Write { path: db, source })?;
        Ok(())
    }

    fn snapshot(&self, account: &Account) -> lifeline_engine::Result<Option<Vec<u8>>> {
        let db = device::path(&self.data_dir, account.id);
        if account.kind != AccountKind::Whatsapp || !db.exists() {
            return Ok(None);
        }
        device::snapshot(&db)
            .map(Some)
            .map_err(|source| lifeline_engine::Error::Read {
                what: db.display().to_string(),
                source,
            })
    }

    fn restore(&self, account: &Account, snapshot: &[u8]) -> lifeline_engine::Result<()> {
        if account.kind != AccountKind::Whatsapp {
            return Ok(());
        }
        let db = device::path(&self.data_dir, account.id);
        device::restore(&db, snapshot)
            .map_err(|source| lifeline_engine::Error::Write { path: db, source })
    }
}

type Outcome = Option<(Reason, Option<String>)>;

impl WhatsAppConnector {
    async fn connection(
        &self,
        request: ConnectRequest,
        events: &mpsc::Sender<ConnEvent>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let account = &request.account;
        let db = device::path(&self.data_dir, account.id);
        if let Err(e) = device::prepare(&db) {
            return Some((
                Reason::Network,
                Some(format!("device store {}: {e}", db.display())),
            ));
        }
        let Some(db_str) = db.to_str() else {
            return Some((
                Reason::Network,
                Some("the data dir path is not UTF-8".into()),
            ));
        };
        let store = match SqliteStore::new(db_str).await {
            Ok(s) => s,
            Err(e) => return Some((Reason::Network, Some(format!("device store: {e}")))),
        };
        let _ = device::restrict(&db);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (factory, via, http) = match self.transport(&request).await {
            Ok(t) => t,
            Err(ended) => return Some(ended),
        };
        let mut builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(factory)
            .with_event_handler(Forward(tx));
        if let Some(http) = http {
            builder = builder.with_http_client(http);
        }
        if let Some(v) = self.endpoint.version {
            builder = builder.with_version(v);
        }
        let phone = match &request.link {
            Some(LinkMode::PhoneCode { phone }) => Some(phone.clone()),
            _ => None,
        };
        if let Some(p) = &phone {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: p.trim_start_matches('+').to_owned(),
                ..PairCodeOptions::default()
            });
        }
        let bot = match builder.build().await {
            Ok(b) => b,
            Err(e) => return Some((Reason::Network, Some(format!("client setup: {e}")))),
        };
        let client = bot.client();
        // The engine's policy is the only reconnect policy.
        client.enable_auto_reconnect.store(false, Ordering::SeqCst);
        let mut handle = bot.spawn();
        let keepalive = request.config.keepalive();
        let close_wait = request.config.close_timeout() * 3 / 4;
        // Registered before this connection? (See `linked_here`.)
        let was_registered = client
            .persistence_manager()
            .get_device_snapshot()
            .is_registered();
        let mut linked = false;
        let mut alive =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Our own ping once logged in, answered or not: the client's "connected" flag stays up
        // on a socket the server has stopped answering, and its own keepalive takes up to a
        // minute to notice.
        let mut ping: Option<BoxFuture<'static, Pong>> = None;
        let pong_timeout = request.config.pong_timeout();
        // Until it is logged in (or shows a code to link), the attempt has the connect timeout;
        // the library's own limits are far longer.
        let connect_timeout = request.config.connect_timeout();
        let give_up = tokio::time::sleep(connect_timeout);
        tokio::pin!(give_up);
        let mut settled = false;
        let mut logged_in = false;
        let watched = client.clone();
        let store_path = db.clone();
        let outcome: Outcome = async move {
            loop {
                let event = tokio::select! {
                    _ = cancel.cancelled() => {
                        stop(handle, close_wait).await;
                        return None;
                    }
                    _ = &mut handle => {
                        // The library saves device state in the background; the next connection
                        // opens the same store, so it must see the credentials a link just stored.
                        if let Err(e) = client.persistence_manager().flush().await {
                            tracing::warn!(account = account.id.0, error = %e, "could not save the device state");
                        }
                        // What the client said before it stopped says why it stopped (its handler
                        // queues the event before the run loop ends, so it is already here).
                        while let Ok(event) = rx.try_recv() {
                            match mapping::map(&event, chrono::Utc::now(), phone.as_deref()) {
                                Mapped::End { reason, detail, wipe } => {
                                    if wipe {
                                        wipe_after_logout(&db, account.id.0);
                                    }
                                    return Some((reason, detail));
                                }
                                Mapped::Linked => linked = true,
                                Mapped::Emit(_) | Mapped::Alive => {}
                            }
                        }
                        if linked_here(&client, was_registered, linked) {
                            return logging_in_next();
                        }
                        // With auto-reconnect off, a failed or lost transport ends the bot quietly.
                        return Some((Reason::Network, Some("could not reach WhatsApp or the connection ended".into())));
                    }
                    _ = &mut give_up, if !settled => {
                        stop(handle, close_wait).await;
                        return Some((
                            Reason::Timeout,
                            Some(format!("WhatsApp did not log this device in within {connect_timeout:.0?}")),
                        ));
                    }
                    _ = alive.tick() => {
                        if ping.is_none() && logged_in && client.is_connected() {
                            ping = Some(Box::pin(send_ping(client.clone(), pong_timeout)));
                        }
                        continue;
                    }
                    pong = async {
                        match ping.as_mut() {
                            Some(p) => p.await,
                            None => std::future::pending().await,
                        }
                    }, if ping.is_some() => {
                        ping = None;
                        match pong {
                            Pong::Answered => {
                                if events.send(ConnEvent::Alive).await.is_err() {
                                    stop(handle, close_wait).await;
                                    return None;
                                }
                            }
                            Pong::Silent => {
                                stop(handle, close_wait).await;
                                return Some((
                                    Reason::Stalled,
                                    Some(format!(
                                        "WhatsApp did not answer a ping within {:.0?}",
                                        pong_timeout
                                    )),
                                ));
                            }
                            // Not connected any more: the client's own end says why.
                            Pong::Gone => {}
                        }
                        continue;
                    }
                    event = rx.recv() => match event {
                        Some(e) => e,
                        None => continue,
                    },
                };
                match mapping::map(&event, chrono::Utc::now(), phone.as_deref()) {
                    Mapped::Emit(mut e) => {
                        match &mut e {
                            ConnEvent::Connected { via: v } => {
                                v.clone_from(&via);
                                settled = true;
                                logged_in = true;
                                alive.reset();
                            }
                            ConnEvent::Link(_) => settled = true,
                            _ => {}
                        }
                        let connected = matches!(e, ConnEvent::Connected { .. });
                        if events.send(e).await.is_err() {
                            stop(handle, close_wait).await;
                            return None;
                        }
                        // Which number this is, for the operator (the phone to pick up).
                        if connected && let Some(identity) = identity(&client) {
                            let _ = events.send(ConnEvent::Identity(identity)).await;
                        }
                    }
                    Mapped::Linked => {
                        tracing::info!(account = account.id.0, "linked by the phone");
                        linked = true;
                    }
                    Mapped::Alive => {
                        let _ = events.try_send(ConnEvent::Alive);
                    }
                    Mapped::End {
                        reason,
                        detail,
                        wipe,
                    } => {
                        stop(handle, close_wait).await;
                        if wipe {
                            wipe_after_logout(&db, account.id.0);
                            return Some((reason, detail));
                        }
                        // Linked on this connection, then cut before the server's "log in
                        // again": the phone has vouched for the keys, so logging in is next.
                        if !lifeline_engine::policy::lifecycle::needs_person(&reason)
                            && linked_here(&client, was_registered, linked)
                        {
                            if let Err(e) = client.persistence_manager().flush().await {
                                tracing::warn!(account = account.id.0, error = %e, "could not save the device state");
                            }
                            return logging_in_next();
                        }
                        return Some((reason, detail));
                    }
                }
            }
        }
        .await;
        // A link that did not happen leaves nothing behind: the half-made device store goes,
        // so the next link starts clean instead of resuming keys no phone vouched for.
        if request.link.is_some()
            && !matches!(outcome, Some((Reason::RestartRequired, _)))
            && !watched
                .persistence_manager()
                .get_device_snapshot()
                .is_registered()
        {
            match device::wipe(&store_path) {
                Ok(_) => tracing::info!(
                    account = account.id.0,
                    "unfinished link: device store deleted"
                ),
                Err(e) => {
                    tracing::warn!(account = account.id.0, error = %e, "could not delete an unfinished link's device store")
                }
            }
        }
        outcome
    }
}

/// Whether this connection linked the device: the library said so, or a device that started
/// unregistered is registered now (it stores the credentials before it answers the phone, so
/// this does not depend on the order of its events and the server's closing 515).
fn linked_here(client: &whatsapp_rust::Client, was_registered: bool, said_linked: bool) -> bool {
    said_linked
        || (!was_registered
            && client
                .persistence_manager()
                .get_device_snapshot()
                .is_registered())
}

/// The end of a connection that linked the device: logging in, on a new one, is next.
fn logging_in_next() -> Outcome {
    Some((
        Reason::RestartRequired,
        Some("linked; logging in on a new connection".into()),
    ))
}

/// How a liveness ping went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pong {
    Answered,
    /// No answer within the pong timeout: the socket is open but nobody is there.
    Silent,
    /// The connection ended meanwhile.
    Gone,
}

/// One `w:p` ping (the one WhatsApp Web sends), bounded by `within`.
async fn send_ping(client: Arc<whatsapp_rust::Client>, within: Duration) -> Pong {
    use whatsapp_rust::IqError;
    use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;
    use whatsapp_rust::wacore::iq::spec::IqSpec as _;
    let iq = KeepaliveSpec::with_timeout(within).build_iq();
    // The library's own deadline, and ours a little later in case it is not kept.
    match tokio::time::timeout(within + Duration::from_millis(500), client.send_iq(iq)).await {
        Ok(Ok(_)) => Pong::Answered,
        Ok(Err(IqError::Timeout)) | Err(_) => Pong::Silent,
        Ok(Err(_)) => Pong::Gone,
    }
}

/// The phone removed this device: its keys are useless, and a new link must start clean.
fn wipe_after_logout(db: &std::path::Path, account: i64) {
    match device::wipe(db) {
        Ok(_) => tracing::info!(account, "device keys deleted after logout"),
        Err(e) => tracing::warn!(account, error = %e, "could not delete device store"),
    }
}

impl WhatsAppConnector {
    /// The transport (and, behind a proxy, an HTTP client through the same hop). With a proxy
    /// chain the tunnel is opened here, walking the chain, so the hop is known before the client
    /// starts; without one the library's own transport connects directly.
    async fn transport(
        &self,
        request: &ConnectRequest,
    ) -> Result<(LifelineTransport, Option<String>, Option<UreqHttpClient>), (Reason, Option<String>)>
    {
        let url = self
            .endpoint
            .url
            .clone()
            .unwrap_or_else(|| WHATSAPP_WEB_WS_URL.to_owned());
        if request.route.is_empty() {
            let mut factory = TokioWebSocketTransportFactory::new();
            if self.endpoint.url.is_some() {
                factory = factory.with_url(url);
            }
            return Ok((LifelineTransport::Direct(factory), None, None));
        }
        let target = Target::of_url(&url)
            .ok_or_else(|| (Reason::Network, Some(format!("no host in {url}"))))?;
        let timeout = request.config.connect_timeout();
        let (stream, i) = proxy::connect(&request.route, request.secrets.clone(), &target, timeout)
            .await
            .map_err(|e| (e.reason(), Some(e.to_string())))?;
        let hop = request.route[i].clone();
        let via = Some(format!("via {hop}"));
        // The version check and media go through the same exit as the chat socket.
        let http = match &hop.proxy {
            None => None,
            Some(entry) => {
                let with_creds = proxy::url_with_credentials(entry, request.secrets.clone())
                    .await
                    .map_err(|e| (Reason::CredentialsMissing, Some(e.to_string())))?;
                let proxy = ureq::Proxy::new(with_creds.expose()).map_err(|e| {
                    (
                        Reason::Network,
                        Some(format!("proxy {} for HTTP: {e}", entry.url)),
                    )
                })?;
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .proxy(Some(proxy))
                    .build()
                    .into();
                Some(UreqHttpClient::with_agent(agent))
            }
        };
        let routed = Routed {
            hop,
            tunnel: std::sync::Mutex::new(Some(stream)),
            secrets: request.secrets.clone(),
            timeout,
        };
        Ok((
            LifelineTransport::Routed {
                url,
                routed: Box::new(routed),
            },
            via,
            http,
        ))
    }
}

/// Stops the bot, bounded: shutdown flushes and waits; past the bound the shutdown future (and
/// with it the handle) is dropped, which aborts the bot and closes its socket.
async fn stop(handle: BotHandle, within: Duration) {
    if tokio::time::timeout(within, handle.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("whatsapp client did not stop in time; aborted");
    }
}

/// The number's phone number (`+` and digits) and profile name, once paired.
fn identity(client: &whatsapp_rust::Client) -> Option<lifeline_engine::model::Identity> {
    let pn = client.pn()?;
    let name = client.push_name();
    Some(lifeline_engine::model::Identity {
        id: format!("+{}", pn.user),
        name: (!name.trim().is_empty()).then(|| name.trim().to_owned()),
    })
}
