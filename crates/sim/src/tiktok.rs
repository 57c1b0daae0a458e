//! An offline TikTok LIVE: room info, alive checks, the cookie page, the first fetch and the live
//! WebSocket, on loopback. Tests drive creators live and off, push events, turn on rate limits
//! and device blocks, and read back what the connector asked for and what reached its feeds.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use lifeline_tiktok::proto::method::{CHAT, CONTROL, GIFT, LIKE, ROOM_USER_SEQ, SOCIAL};
use lifeline_tiktok::proto::{self, CONTROL_STREAM_ENDED, GIFT_STREAKABLE, SOCIAL_FOLLOW};
use lifeline_tiktok::proto::{
    ChatMessage, ControlMessage, FetchResult, GiftDetails, GiftMessage, LikeMessage, PushFrame,
    RoomUserSeqMessage, SocialMessage, message,
};
use prost::Message as _;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as Upgrade, Response as Accepted,
};
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PUSH_PATH: &str = "/webcast/im/push/v2/";
/// The API key the fake signing service (`/webcast/fetch/`) takes.
pub const SIGNER_KEY: &str = "offline-signer-key";
const FIRST_ROOM: u64 = 7_300_000_000_000_000_000;
const FIRST_USER_ID: u64 = 6_900_000_000_000_000_000;
const SOCIAL_SHARE: i64 = 3;
const VERIFY_PAGE: &str = "<html><body><div id=\"captcha-verify\">Verify</div></body></html>";

/// Something that happens in a live, as its feed carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    Viewers(i64),
    Likes {
        count: i64,
        total: i64,
    },
    Comment(String),
    /// `streak`: sent as a streak growing to `repeat_count`, one message per step.
    Gift {
        repeat_count: i64,
        streak: bool,
    },
    Follow,
    Share,
}

impl LiveEvent {
    /// What TikTok sends for it, one frame per message.
    fn messages(&self) -> Vec<proto::Message> {
        match self {
            &Self::Viewers(total) => vec![message(ROOM_USER_SEQ, &RoomUserSeqMessage { total })],
            &Self::Likes { count, total } => vec![message(LIKE, &LikeMessage { count, total })],
            Self::Comment(content) => {
                let content = content.clone();
                vec![message(CHAT, &ChatMessage { content })]
            }
            &Self::Gift {
                repeat_count,
                streak,
            } => gifts(repeat_count, streak),
            Self::Follow => vec![social(SOCIAL_FOLLOW)],
            Self::Share => vec![social(SOCIAL_SHARE)],
        }
    }
}

fn social(action: i64) -> proto::Message {
    message(SOCIAL, &SocialMessage { action })
}

/// A streak repeats its message as it grows; only the last one says it is done.
fn gifts(n: i64, streak: bool) -> Vec<proto::Message> {
    let gift = |repeat_count, repeat_end, gift_type| {
        let gift = Some(GiftDetails { gift_type });
        let g = GiftMessage {
            gift_id: 5655,
            repeat_count,
            repeat_end,
            gift,
        };
        message(GIFT, &g)
    };
    if !streak {
        return vec![gift(n, 0, 2)];
    }
    let steps = (1..n).map(|i| gift(i, 0, GIFT_STREAKABLE));
    steps.chain([gift(n, 1, GIFT_STREAKABLE)]).collect()
}

/// What reached at least one feed socket of a room: what a correct client must have counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub peak_viewers: i64,
    pub likes: i64,
    pub comments: i64,
    pub gifts: i64,
    pub follows: i64,
}

impl Totals {
    fn add(&mut self, event: &LiveEvent) {
        match *event {
            LiveEvent::Viewers(v) => self.peak_viewers = self.peak_viewers.max(v),
            LiveEvent::Likes { total, .. } => self.likes = self.likes.max(total),
            LiveEvent::Comment(_) => self.comments += 1,
            // A gift is at least one, whatever its count says.
            LiveEvent::Gift { repeat_count, .. } => self.gifts += repeat_count.max(1),
            LiveEvent::Follow => self.follows += 1,
            LiveEvent::Share => {}
        }
    }
}

/// How every HTTP endpoint refuses while a limit is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Limit {
    #[default]
    Off,
    Http429,
    /// A verify challenge: `statusCode` 10000 in JSON, an HTML page where protobuf is expected.
    Captcha,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    RoomInfo,
    Alive,
    Page,
    Fetch,
}

/// One HTTP request the fake answered (refused ones too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub at: Instant,
    pub kind: RequestKind,
    pub user: Option<String>,
    /// A room-info answer that said the creator is live.
    pub answered_live: bool,
}

/// What a feed socket's task is told to do.
#[derive(Debug)]
enum Out {
    Frame(Vec<u8>),
    /// Send this frame, then close the socket properly.
    End(Vec<u8>),
    /// Drop the TCP connection without a close frame.
    Cut,
}

#[derive(Debug, Default)]
struct Creator {
    name: String,
    nickname: String,
    id: u64,
    room: Option<String>,
    joins: u64,
    max_open: usize,
}

#[derive(Debug, Default)]
struct Room {
    /// The owner, lower-cased.
    user: String,
    alive: bool,
    feeds: HashMap<u64, mpsc::UnboundedSender<Out>>,
    delivered: Totals,
}

#[derive(Debug, Default)]
struct World {
    /// By lower-cased name: TikTok matches user names in any case.
    creators: HashMap<String, Creator>,
    rooms: HashMap<String, Room>,
    push_url: String,
    counter: u64,
    limit: Limit,
    blocked: bool,
    requests: Vec<Request>,
    heartbeats: u64,
    acks: u64,
}

impl World {
    fn enrol(&mut self, user: &str) -> &mut Creator {
        let id = FIRST_USER_ID + self.creators.len() as u64;
        let (name, nickname) = (user.to_owned(), user.to_owned());
        let new = || Creator {
            name,
            nickname,
            id,
            ..Creator::default()
        };
        self.creators
            .entry(user.to_ascii_lowercase())
            .or_insert_with(new)
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn creator(&mut self, user: &str) -> Option<&mut Creator> {
        self.creators.get_mut(&user.to_ascii_lowercase())
    }

    fn live_room(&mut self, user: &str) -> Option<&mut Room> {
        let room = self.creator(user)?.room.clone()?;
        self.rooms.get_mut(&room).filter(|r| r.alive)
    }

    fn open_feeds(&self, user: &str) -> usize {
        let user = user.to_ascii_lowercase();
        let rooms = self.rooms.values().filter(|r| r.user == user);
        rooms.map(|r| r.feeds.len()).sum()
    }

    /// A `msg` frame as TikTok sends one: gzipped, wanting an ack.
    fn frame(&mut self, message: proto::Message) -> std::io::Result<Vec<u8>> {
        let n = self.next();
        let result = FetchResult {
            messages: vec![message],
            cursor: format!("c-{n}"),
            internal_ext: format!("ext-{n}"),
            needs_ack: true,
            ..FetchResult::default()
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&result.encode_to_vec())?;
        let frame = PushFrame {
            seq_id: n,
            log_id: n,
            headers: HashMap::from([("compress_type".into(), "gzip".into())]),
            payload_encoding: "gzip".into(),
            payload_type: "msg".into(),
            payload: gz.finish()?,
        };
        Ok(frame.encode_to_vec())
    }

    /// Logs a request; the limit's refusal while one is on.
    fn arrive(&mut self, kind: RequestKind, user: Option<String>) -> Option<Response> {
        let at = Instant::now();
        let answered_live = false;
        self.requests.push(Request {
            at,
            kind,
            user,
            answered_live,
        });
        let page = matches!(kind, RequestKind::Page | RequestKind::Fetch);
        match self.limit {
            Limit::Off => None,
            Limit::Http429 => Some(StatusCode::TOO_MANY_REQUESTS.into_response()),
            Limit::Captcha if page => Some(html(VERIFY_PAGE)),
            Limit::Captcha => {
                Some(Json(json!({"statusCode": 10_000, "data": null})).into_response())
            }
        }
    }
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake. Clones share it; its servers run until the runtime stops.
#[derive(Debug, Clone)]
pub struct FakeTikTok {
    world: Shared,
    http: SocketAddr,
}

impl FakeTikTok {
    /// Starts the HTTP server and the live WebSocket server, each on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", "127.0.0.1:0").await
    }

    /// [`FakeTikTok::start`] on given addresses: the HTTP endpoints, and the live feeds.
    pub async fn start_on(http: &str, feeds: &str) -> std::io::Result<Self> {
        let http = TcpListener::bind(http).await?;
        let ws = TcpListener::bind(feeds).await?;
        let push_url = format!("ws://{}{PUSH_PATH}", ws.local_addr()?);
        let world = Arc::new(Mutex::new(World {
            push_url,
            ..World::default()
        }));
        let app = Router::new()
            .route("/api-live/user/room/", get(room_info))
            .route("/webcast/room/check_alive/", get(check_alive))
            .route("/webcast/im/fetch/", get(fetch))
            .route("/webcast/fetch/", get(signed_fetch))
            .route("/{page}/live", get(page))
            .with_state(world.clone());
        let addr = http.local_addr()?;
        tokio::spawn(async move { axum::serve(http, app).await });
        tokio::spawn(accept_feeds(world.clone(), ws));
        Ok(Self { world, http: addr })
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// The base URL of every HTTP endpoint (web and webcast alike).
    pub fn url(&self) -> String {
        format!("http://{}/", self.http)
    }

    pub fn add_creator(&self, user: &str, nickname: &str) {
        self.lock().enrol(user).nickname = nickname.to_owned();
    }

    /// Starts a new live (ending any running one) and returns its room id. An unknown user is
    /// added first, its name as nickname.
    pub fn go_live(&self, user: &str) -> String {
        self.end_live(user);
        let mut w = self.lock();
        let room = (FIRST_ROOM + w.next()).to_string();
        let owner = user.to_ascii_lowercase();
        let new = Room {
            user: owner,
            alive: true,
            ..Room::default()
        };
        w.rooms.insert(room.clone(), new);
        w.enrol(user).room = Some(room.clone());
        room
    }

    /// Ends the live: its feeds get the stream-ended control message, then a proper close.
    pub fn end_live(&self, user: &str) {
        let mut w = self.lock();
        let ended = ControlMessage {
            action: CONTROL_STREAM_ENDED,
        };
        let frame = w.frame(message(CONTROL, &ended));
        let Some(room) = w.live_room(user) else {
            return;
        };
        room.alive = false;
        for (_, feed) in room.feeds.drain() {
            let _ = feed.send(frame.as_ref().map_or(Out::Cut, |f| Out::End(f.clone())));
        }
    }

    /// Pushes one event to every open feed of the user's live. True when at least one feed
    /// took it (only then does it count in [`FakeTikTok::delivered`]).
    pub fn send(&self, user: &str, event: LiveEvent) -> bool {
        let mut w = self.lock();
        let frames = event.messages().into_iter().map(|m| w.frame(m));
        let Ok(frames) = frames.collect::<std::io::Result<Vec<_>>>() else {
            return false;
        };
        let Some(room) = w.live_room(user) else {
            return false;
        };
        let mut delivered = false;
        for feed in room.feeds.values() {
            delivered |= frames
                .iter()
                .all(|f| feed.send(Out::Frame(f.clone())).is_ok());
        }
        if delivered {
            room.delivered.add(&event);
        }
        delivered
    }

    pub fn delivered(&self, room_id: &str) -> Option<Totals> {
        self.lock().rooms.get(room_id).map(|r| r.delivered)
    }

    /// Cuts the user's feeds without a close frame; the live goes on.
    pub fn drop_feeds(&self, user: &str) {
        let owner = user.to_ascii_lowercase();
        let mut w = self.lock();
        for room in w.rooms.values_mut().filter(|r| r.user == owner) {
            room.feeds
                .drain()
                .for_each(|(_, feed)| drop(feed.send(Out::Cut)));
        }
    }

    pub fn set_limit(&self, mode: Limit) {
        self.lock().limit = mode;
    }

    /// While on, live WebSocket handshakes are refused as TikTok refuses a blocked device.
    pub fn block_devices(&self, on: bool) {
        self.lock().blocked = on;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Feed connections accepted for the user, over all its rooms.
    pub fn joins(&self, user: &str) -> u64 {
        self.lock().creator(user).map_or(0, |c| c.joins)
    }

    pub fn open_feeds(&self, user: &str) -> usize {
        self.lock().open_feeds(user)
    }

    /// The most feeds the user ever had open at once.
    pub fn max_open_feeds(&self, user: &str) -> usize {
        self.lock().creator(user).map_or(0, |c| c.max_open)
    }

    pub fn heartbeats(&self) -> u64 {
        self.lock().heartbeats
    }

    pub fn acks(&self) -> u64 {
        self.lock().acks
    }

    /// The user's current room, or its last one.
    pub fn room_of(&self, user: &str) -> Option<String> {
        self.lock().creator(user)?.room.clone()
    }
}

fn html(body: &'static str) -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn has_session<'a>(mut cookies: impl Iterator<Item = &'a HeaderValue>) -> bool {
    cookies.any(|c| c.to_str().is_ok_and(|c| c.contains("ttwid=")))
}

type Params = Query<HashMap<String, String>>;

async fn room_info(State(world): State<Shared>, Query(q): Params) -> Response {
    let user = q.get("uniqueId").cloned().unwrap_or_default();
    let mut w = lock(&world);
    if let Some(refused) = w.arrive(RequestKind::RoomInfo, Some(user.clone())) {
        return refused;
    }
    let Some(c) = w.creators.get(&user.to_ascii_lowercase()) else {
        return Json(json!({"statusCode": 19_881_007, "data": null})).into_response();
    };
    let room = c.room.clone().unwrap_or_default();
    let live = w.rooms.get(&room).is_some_and(|r| r.alive);
    let status = if live { 2 } else { 4 };
    let answer = json!({"statusCode": 0, "data": {
        "user": {"id": c.id.to_string(), "uniqueId": c.name, "nickname": c.nickname,
                 "roomId": room, "status": status},
        "liveRoom": {"status": status},
    }});
    if let Some(r) = w.requests.last_mut() {
        r.answered_live = live;
    }
    Json(answer).into_response()
}

async fn check_alive(State(world): State<Shared>, Query(q): Params) -> Response {
    let mut w = lock(&world);
    if let Some(refused) = w.arrive(RequestKind::Alive, None) {
        return refused;
    }
    let ids = q.get("room_ids").map(String::as_str).unwrap_or_default();
    let data: Vec<_> = (ids.split(',').filter(|id| !id.is_empty()))
        .map(|id| {
            let alive = w.rooms.get(id).is_some_and(|r| r.alive);
            let number = id.parse::<u64>().unwrap_or_default();
            json!({"alive": alive, "room_id": number, "room_id_str": id})
        })
        .collect();
    Json(json!({"status_code": 0, "data": data})).into_response()
}

async fn page(State(world): State<Shared>, Path(page): Path<String>) -> Response {
    let Some(user) = page.strip_prefix('@') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut w = lock(&world);
    if let Some(refused) = w.arrive(RequestKind::Page, Some(user.to_owned())) {
        return refused;
    }
    // Differs on every visit, as TikTok's does.
    let token = format!("{:016x}", w.next().wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let cookies = AppendHeaders([
        (SET_COOKIE, format!("ttwid=1%7C{token}; Path=/; HttpOnly")),
        (SET_COOKIE, format!("tt_csrf_token={token}; Path=/")),
    ]);
    (cookies, html("<html><body>LIVE</body></html>")).into_response()
}

/// A signing service's fetch: the same answer, for its API key only.
async fn signed_fetch(world: State<Shared>, q: Params, headers: HeaderMap) -> Response {
    let key = headers.get("x-api-key").and_then(|k| k.to_str().ok());
    if key != Some(SIGNER_KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    fetch(world, q, headers).await
}

async fn fetch(State(world): State<Shared>, Query(q): Params, headers: HeaderMap) -> Response {
    let room_id = q.get("room_id").cloned().unwrap_or_default();
    let mut w = lock(&world);
    let owner = w.rooms.get(&room_id).map(|r| r.user.clone());
    if let Some(refused) = w.arrive(RequestKind::Fetch, owner) {
        return refused;
    }
    if !has_session(headers.get_all("cookie").iter()) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if !w.rooms.get(&room_id).is_some_and(|r| r.alive) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let first = FetchResult {
        cursor: "c-1".into(),
        internal_ext: "ext-0".into(),
        heartbeat_duration: 10_000,
        needs_ack: true,
        ws_url: w.push_url.clone(),
        ws_params: HashMap::from([("imprp".into(), "x".into())]),
        ..FetchResult::default()
    };
    let protobuf = [(CONTENT_TYPE, "application/protobuf")];
    (protobuf, first.encode_to_vec()).into_response()
}

async fn accept_feeds(world: Shared, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(feed(world.clone(), tcp));
            }
            // Out of descriptors, most likely: give the sockets being closed a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A feed socket's place in its room, from its accepted handshake until its task ends.
struct Registered {
    world: Shared,
    room: String,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.world).rooms.get_mut(&self.room) {
            r.feeds.remove(&self.id);
        }
    }
}

fn refuse(status: StatusCode) -> ErrorResponse {
    let mut refusal = ErrorResponse::new(None);
    *refusal.status_mut() = status;
    refusal
}

/// Decides a handshake, and registers the socket under its room when it is accepted.
#[allow(clippy::result_large_err)]
fn admit(
    world: &Shared,
    req: &Upgrade,
    out: mpsc::UnboundedSender<Out>,
) -> Result<Registered, ErrorResponse> {
    let mut w = lock(world);
    if w.blocked {
        let mut refusal = refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let blocked = HeaderValue::from_static("DEVICE_BLOCKED");
        refusal.headers_mut().insert("handshake-msg", blocked);
        return Err(refusal);
    }
    if req.uri().path() != PUSH_PATH {
        return Err(refuse(StatusCode::NOT_FOUND));
    }
    if !has_session(req.headers().get_all("cookie").iter()) {
        return Err(refuse(StatusCode::FORBIDDEN));
    }
    let query = req.uri().query().unwrap_or_default().as_bytes();
    let room_id = url::form_urlencoded::parse(query)
        .find_map(|(k, v)| (k == "room_id").then(|| v.into_owned()))
        .unwrap_or_default();
    let id = w.next();
    let Some(room) = w.rooms.get_mut(&room_id).filter(|r| r.alive) else {
        return Err(refuse(StatusCode::NOT_FOUND));
    };
    room.feeds.insert(id, out);
    let owner = room.user.clone();
    let open = w.open_feeds(&owner);
    if let Some(c) = w.creator(&owner) {
        c.joins += 1;
        c.max_open = c.max_open.max(open);
    }
    Ok(Registered {
        world: world.clone(),
        room: room_id,
        id,
    })
}

// The handshake callback's error type is tungstenite's.
#[allow(clippy::result_large_err)]
async fn feed(world: Shared, tcp: TcpStream) {
    let (out, mut outbox) = mpsc::unbounded_channel();
    let mut registered = None;
    // Registered before the handshake's answer goes out: once the client has its socket,
    // everything sent to the room reaches it.
    let callback = |req: &Upgrade, resp: Accepted| -> Result<Accepted, ErrorResponse> {
        registered = Some(admit(&world, req, out)?);
        Ok(resp)
    };
    let accepted = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
    let _registered = registered;
    let Ok(mut ws) = accepted else {
        return;
    };
    loop {
        let outgoing = tokio::select! {
            next = outbox.recv() => match next {
                Some(Out::Frame(f)) => f,
                Some(Out::End(f)) => {
                    // A proper closing handshake: the client reads every frame before the
                    // end, and its last acknowledgements are read here. (Hanging up on unread
                    // acknowledgements makes the kernel reset the connection, and the client's
                    // unread frames would be lost with it.)
                    let _ = ws.send(Ws::Binary(f.into())).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let _ = ws.close(None).await;
                        while let Some(Ok(m)) = ws.next().await {
                            if m.is_close() {
                                break;
                            }
                        }
                    })
                    .await;
                    return;
                }
                // Dropping the stream ends the TCP connection with no closing handshake.
                Some(Out::Cut) | None => return,
            },
            msg = ws.next() => match msg {
                Some(Ok(Ws::Binary(data))) => match heard(&world, &data) {
                    Some(reply) => reply,
                    None => continue,
                },
                Some(Ok(Ws::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        if ws.send(Ws::Binary(outgoing.into())).await.is_err() {
            return;
        }
    }
}

/// Counts a client's frame; the answer to send back, if it wants one.
fn heard(world: &Mutex<World>, data: &[u8]) -> Option<Vec<u8>> {
    let frame = PushFrame::decode(data).ok()?;
    let mut w = lock(world);
    match frame.payload_type.as_str() {
        "ack" => w.acks += 1,
        "hb" => w.heartbeats += 1,
        _ => {}
    }
    // TikTok answers every heartbeat; a client reads silence as a stall.
    (frame.payload_type == "hb").then(|| frame.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use lifeline_tiktok::api::{Api, CallError, Endpoints, Join};
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    type Feed = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

    async fn fake() -> (FakeTikTok, Api) {
        let fake = FakeTikTok::start().await.expect("fake starts");
        let base = url::Url::parse(&fake.url()).expect("base URL");
        (
            fake,
            Api::new(Endpoints::at(base), Duration::from_secs(5)).expect("client"),
        )
    }

    async fn join(api: &Api, room: &str) -> Join {
        let cookie = api.session_cookie("toko").await.expect("cookie");
        api.first_fetch(room, &cookie, None).await.expect("fetch")
    }

    async fn connect(join: &Join) -> Result<Feed, WsError> {
        let mut req = join.url.as_str().into_client_request()?;
        let cookie = HeaderValue::from_str(&join.cookie).expect("cookie header");
        req.headers_mut().insert("cookie", cookie);
        Ok(tokio_tungstenite::connect_async(req).await?.0)
    }

    async fn next_frame(ws: &mut Feed) -> PushFrame {
        match ws.next().await {
            Some(Ok(Ws::Binary(b))) => PushFrame::decode(b.as_ref()).expect("push frame"),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The one message of a `msg` frame.
    async fn next_message(ws: &mut Feed) -> proto::Message {
        let frame = next_frame(ws).await;
        let mut raw = Vec::new();
        let mut gz = flate2::read::GzDecoder::new(frame.payload.as_slice());
        gz.read_to_end(&mut raw).expect("gzip");
        let mut messages = FetchResult::decode(raw.as_slice())
            .expect("fetch result")
            .messages;
        messages.pop().expect("a message")
    }

    async fn push(ws: &mut Feed, payload_type: &str) {
        let frame = PushFrame {
            payload_type: payload_type.into(),
            ..PushFrame::default()
        };
        ws.send(Ws::Binary(frame.encode_to_vec().into()))
            .await
            .expect("frame sent");
    }

    #[tokio::test]
    async fn room_info_follows_the_creator() {
        let (fake, api) = fake().await;
        fake.add_creator("Toko", "Toko Mawar");
        let off = api.room_info("toko").await.expect("room info");
        assert_eq!((off.live, off.room_id.as_str()), (false, ""));
        assert_eq!(off.nickname.as_deref(), Some("Toko Mawar"));

        let room = fake.go_live("toko");
        let on = api.room_info("TOKO").await.expect("room info");
        assert_eq!((on.live, on.room_id.as_str()), (true, room.as_str()));
        fake.end_live("toko");
        let after = api.room_info("toko").await.expect("room info");
        assert_eq!((after.live, after.room_id), (false, room));
        assert_eq!(api.room_info("nobody").await, Err(CallError::NotFound));

        let live: Vec<_> = fake
            .requests()
            .iter()
            .map(|r| (r.kind, r.answered_live))
            .collect();
        let info = RequestKind::RoomInfo;
        assert_eq!(
            live,
            [(info, false), (info, true), (info, false), (info, false)]
        );
    }

    #[tokio::test]
    async fn alive_answers_every_room_asked() {
        let (fake, api) = fake().await;
        let ended = fake.go_live("a");
        fake.end_live("a");
        let live = fake.go_live("b");
        let answer = api
            .alive(&[live.clone(), ended.clone(), "123".into()])
            .await;
        let expected = vec![(live, true), (ended, false), ("123".into(), false)];
        assert_eq!(answer, Ok(expected));
    }

    #[tokio::test]
    async fn the_first_fetch_points_at_the_feed_server() {
        let (fake, api) = fake().await;
        let room = fake.go_live("toko");
        let cookie = api.session_cookie("toko").await.expect("cookie");
        assert!(cookie.contains("ttwid=") && cookie.contains("tt_csrf_token="));
        let join = api.first_fetch(&room, &cookie, None).await.expect("fetch");
        let push_url = lock(&fake.world).push_url.clone();
        assert!(join.url.as_str().starts_with(&push_url), "{}", join.url);
        let q: HashMap<_, _> = join.url.query_pairs().into_owned().collect();
        let param = |k: &str| q.get(k).map(String::as_str);
        assert_eq!(param("room_id"), Some(room.as_str()));
        assert_eq!(
            (param("cursor"), param("internal_ext")),
            (Some("c-1"), Some("ext-0"))
        );
        assert_eq!(param("imprp"), Some("x"));
        assert_eq!(join.heartbeat, Duration::from_secs(10));

        let no_session = api.first_fetch(&room, "a=b", None).await;
        assert_eq!(no_session, Err(CallError::Status(403)));
        fake.end_live("toko");
        let over = api.first_fetch(&room, &cookie, None).await;
        assert_eq!(over, Err(CallError::NotFound));
    }

    #[tokio::test]
    async fn a_signing_service_fetches_the_room_with_its_key() {
        let (fake, _) = fake().await;
        let base = url::Url::parse(&fake.url()).expect("base URL");
        let signer = lifeline_tiktok::api::Signer {
            url: base.clone(),
            key: lifeline_tiktok::api::SecretName::parse("tiktok-signer").expect("name"),
        };
        let endpoints = Endpoints {
            signer: Some(signer),
            ..Endpoints::at(base)
        };
        let api = Api::new(endpoints, Duration::from_secs(5)).expect("client");
        let room = fake.go_live("toko");
        let cookie = api.session_cookie("toko").await.expect("cookie");
        let join = api.first_fetch(&room, &cookie, Some(SIGNER_KEY)).await;
        assert!(join.is_ok(), "{join:?}");
        let wrong = api.first_fetch(&room, &cookie, Some("not-the-key")).await;
        assert_eq!(wrong, Err(CallError::Status(401)));
    }

    #[tokio::test]
    async fn limits_refuse_every_call_and_are_logged() {
        let (fake, api) = fake().await;
        let room = fake.go_live("toko");
        let cookie = api.session_cookie("toko").await.expect("cookie");
        for (limit, captcha) in [(Limit::Http429, false), (Limit::Captcha, true)] {
            fake.set_limit(limit);
            let limited = Some(CallError::RateLimited { captcha });
            assert_eq!(api.room_info("toko").await.err(), limited);
            assert_eq!(api.first_fetch(&room, &cookie, None).await.err(), limited);
        }
        fake.set_limit(Limit::Off);
        assert!(api.room_info("toko").await.is_ok_and(|r| r.live));
        let kinds: Vec<_> = fake.requests().iter().map(|r| r.kind).collect();
        use RequestKind::{Fetch, Page, RoomInfo};
        assert_eq!(kinds, [Page, RoomInfo, Fetch, RoomInfo, Fetch, RoomInfo]);
    }

    #[tokio::test]
    async fn feeds_carry_events_heartbeats_and_the_end() {
        let (fake, api) = fake().await;
        let room = fake.go_live("toko");
        let mut ws = connect(&join(&api, &room).await).await.expect("feed");
        assert_eq!((fake.joins("toko"), fake.open_feeds("toko")), (1, 1));

        assert!(fake.send("toko", LiveEvent::Comment("halo".into())));
        assert_eq!(next_message(&mut ws).await.method, CHAT);
        push(&mut ws, "ack").await;
        assert!(fake.send(
            "toko",
            LiveEvent::Gift {
                repeat_count: 3,
                streak: true
            }
        ));
        for end in [0, 0, 1] {
            let m = next_message(&mut ws).await;
            let gift = GiftMessage::decode(m.payload.as_slice()).expect("gift");
            assert_eq!(gift.repeat_end, end);
        }
        // The answer to the heartbeat comes after the ack was read, so both are counted.
        push(&mut ws, "hb").await;
        assert_eq!(next_frame(&mut ws).await.payload_type, "hb");
        assert_eq!((fake.heartbeats(), fake.acks()), (1, 1));

        fake.end_live("toko");
        assert_eq!(next_message(&mut ws).await.method, CONTROL);
        assert!(matches!(ws.next().await, Some(Ok(Ws::Close(_)))));
        assert!(!fake.send("toko", LiveEvent::Follow));
        let totals = Totals {
            comments: 1,
            gifts: 3,
            ..Totals::default()
        };
        assert_eq!(fake.delivered(&room), Some(totals));
    }

    #[tokio::test]
    async fn dropped_and_blocked_feeds() {
        let (fake, api) = fake().await;
        let room = fake.go_live("toko");
        let join = join(&api, &room).await;
        let mut ws = connect(&join).await.expect("feed");
        fake.drop_feeds("toko");
        assert!(!matches!(ws.next().await, Some(Ok(Ws::Close(_)))));
        assert_eq!(fake.open_feeds("toko"), 0);
        assert_eq!(fake.room_of("toko"), Some(room));

        fake.block_devices(true);
        let Err(WsError::Http(refused)) = connect(&join).await else {
            panic!("the handshake should be refused");
        };
        assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(refused.headers()["handshake-msg"], "DEVICE_BLOCKED");
        assert_eq!((fake.joins("toko"), fake.max_open_feeds("toko")), (1, 1));
    }
}
