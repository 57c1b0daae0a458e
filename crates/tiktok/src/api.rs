//! TikTok's public web endpoints, as Lifeline calls them: the room info of a creator (is the
//! creator live, in which room), a batched alive check by room ids, the page that hands out a
//! session cookie without a login, and the first fetch of a room's messages that says where its
//! live WebSocket is. Every call is paced by [`crate::pace::Poller`]; this module only speaks
//! HTTP and reads answers.

use std::time::Duration;

/// The type of [`Signer::key`].
pub use lifeline_engine::model::SecretName;
use lifeline_engine::state::Reason;
use prost::Message as _;
use serde::Deserialize;

use crate::proto::FetchResult;

/// TikTok's `aid` for the web client, sent with every webcast call.
const AID: &str = "1988";
/// `statusCode` of a room-info answer for a user that does not exist.
pub const STATUS_USER_NOT_FOUND: i64 = 19_881_007;
/// `statusCode` of an answer that asks for a captcha (a verify challenge) instead of data.
pub const STATUS_VERIFY: i64 = 10_000;
/// `statusCode` of an answer that says too many requests came from this client.
pub const STATUS_TOO_MANY: i64 = 4_003_110;
/// `liveRoom.status` while the creator is live; 4 means the last live ended.
pub const ROOM_LIVE: i64 = 2;
/// Where the live WebSocket is when the fetch does not say.
const DEFAULT_PUSH_URL: &str = "wss://webcast16-ws-useast1a.tiktok.com/webcast/im/push/v2/";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/131.0.0.0 Safari/537.36";

/// Where TikTok is. Both bases can point at one server (the offline fake does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The web site: creator pages (session cookie) and room info.
    pub web: url::Url,
    /// The webcast API: alive checks and message fetches.
    pub webcast: url::Url,
    /// A signing service that fetches a room's first messages where a direct fetch is refused.
    pub signer: Option<Signer>,
}

/// An optional signing service: its URL, and the keyring secret that holds its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub url: url::Url,
    pub key: SecretName,
}

impl Endpoints {
    /// TikTok's own servers.
    pub fn tiktok() -> Self {
        Self {
            web: url::Url::parse("https://www.tiktok.com/").expect("a valid constant URL"),
            webcast: url::Url::parse("https://webcast.tiktok.com/").expect("a valid constant URL"),
            signer: None,
        }
    }

    /// One server for everything (the offline fake, a relay).
    pub fn at(base: url::Url) -> Self {
        Self {
            web: base.clone(),
            webcast: base,
            signer: None,
        }
    }

    /// TikTok, unless `LIFELINE_TIKTOK_URL` names another server; a signing service when
    /// `LIFELINE_TIKTOK_SIGNER_URL` is set, with its key in the keyring secret named by
    /// `LIFELINE_TIKTOK_SIGNER_SECRET` (default `tiktok-signer`). Overriding the URL changes
    /// where requests go, never how an answer is checked: https stays verified.
    pub fn from_env() -> Result<Self, SetupError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let parse = |k: &str, v: &str| {
            url::Url::parse(v.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    SetupError::Setting(format!("{k}='{v}' is not an http:// or https:// URL"))
                })
        };
        let mut e = match var("LIFELINE_TIKTOK_URL") {
            Some(v) => Self::at(parse("LIFELINE_TIKTOK_URL", &v)?),
            None => Self::tiktok(),
        };
        if let Some(v) = var("LIFELINE_TIKTOK_SIGNER_URL") {
            let secret =
                var("LIFELINE_TIKTOK_SIGNER_SECRET").unwrap_or_else(|| "tiktok-signer".into());
            e.signer = Some(Signer {
                url: parse("LIFELINE_TIKTOK_SIGNER_URL", &v)?,
                key: SecretName::parse(&secret).map_err(|e| {
                    SetupError::Setting(format!("LIFELINE_TIKTOK_SIGNER_SECRET: {e}"))
                })?,
            });
        }
        Ok(e)
    }
}

/// Why the connector cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A `LIFELINE_TIKTOK_*` setting Lifeline cannot use.
    #[error("{0}")]
    Setting(String),
    #[error("cannot set up an HTTP client for TikTok: {0}")]
    Http(#[from] reqwest::Error),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// HTTP 429, a too-many-requests status or a captcha: every call of the kind must back off.
    RateLimited {
        captcha: bool,
    },
    /// No such user.
    NotFound,
    /// The server answered with an HTTP error.
    Status(u16),
    Timeout,
    /// Connecting, TLS or reading failed.
    Network(String),
    /// An answer Lifeline cannot read.
    Unreadable(String),
}

impl CallError {
    pub fn reason(&self) -> Reason {
        match self {
            CallError::RateLimited { .. } => Reason::RateLimited,
            CallError::NotFound => Reason::NotFound,
            CallError::Status(s) => Reason::Refused { status: Some(*s) },
            CallError::Timeout => Reason::Timeout,
            CallError::Network(_) | CallError::Unreadable(_) => Reason::Network,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            CallError::RateLimited { captcha: true } => "TikTok asked for a captcha".into(),
            CallError::RateLimited { captcha: false } => "TikTok is rate-limiting".into(),
            CallError::NotFound => "TikTok has no user by this name".into(),
            CallError::Status(s) => format!("TikTok answered HTTP {s}"),
            CallError::Timeout => "TikTok did not answer in time".into(),
            CallError::Network(e) => format!("cannot reach TikTok: {e}"),
            CallError::Unreadable(e) => format!("unreadable answer from TikTok: {e}"),
        }
    }

    fn of(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            CallError::Timeout
        } else {
            CallError::Network(e.to_string())
        }
    }
}

/// What room info says about a creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The current (or last) room; empty when the creator never went live.
    pub room_id: String,
    pub live: bool,
    pub nickname: Option<String>,
}

/// Everything needed to open a room's live WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub url: url::Url,
    pub cookie: String,
    pub heartbeat: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomAnswer {
    #[serde(default)]
    status_code: i64,
    #[serde(default)]
    data: Option<RoomData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomData {
    #[serde(default)]
    user: Option<RoomUser>,
    #[serde(default)]
    live_room: Option<LiveRoom>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomUser {
    #[serde(default)]
    room_id: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    status: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct LiveRoom {
    #[serde(default)]
    status: i64,
}

#[derive(Debug, Deserialize)]
struct AliveAnswer {
    /// The webcast API says `status_code`; its verify answers say `statusCode`.
    #[serde(default, alias = "statusCode")]
    status_code: i64,
    #[serde(default)]
    data: Option<Vec<AliveRoom>>,
}

#[derive(Debug, Deserialize)]
struct AliveRoom {
    alive: bool,
    #[serde(default)]
    room_id_str: String,
    #[serde(default)]
    room_id: Option<serde_json::Number>,
}

/// The HTTP side of the connector: one client (connection reuse, timeouts) for every account.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    pub endpoints: Endpoints,
}

impl Api {
    pub fn new(endpoints: Endpoints, timeout: Duration) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self { http, endpoints })
    }

    fn url(base: &url::Url, path: &str, query: &[(&str, &str)]) -> url::Url {
        let mut u = base.clone();
        u.set_path(path);
        u.query_pairs_mut().clear().extend_pairs(query);
        u
    }

    /// Sends a GET and returns the body, after the answers every call shares (429, errors).
    async fn get(&self, url: url::Url, headers: &[(&str, String)]) -> Result<Answer, CallError> {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.map_err(CallError::of)?;
        let status = resp.status().as_u16();
        if status == 429 {
            return Err(CallError::RateLimited { captcha: false });
        }
        let cookies: Vec<String> = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|c| c.split(';').next())
            .map(str::to_owned)
            .collect();
        let html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        let body = read_capped(resp).await?;
        if !(200..300).contains(&status) {
            return Err(match status {
                404 => CallError::NotFound,
                s => CallError::Status(s),
            });
        }
        Ok(Answer {
            body,
            cookies,
            html,
        })
    }

    /// Is the creator live, and in which room.
    pub async fn room_info(&self, user: &str) -> Result<RoomInfo, CallError> {
        let url = Self::url(
            &self.endpoints.web,
            "/api-live/user/room/",
            &[("aid", AID), ("uniqueId", user), ("sourceType", "54")],
        );
        let a = self.get(url, &[]).await?;
        let answer: RoomAnswer = a.json()?;
        check_status(answer.status_code)?;
        let data = answer
            .data
            .ok_or_else(|| CallError::Unreadable("room info without data".into()))?;
        let user = data.user.unwrap_or(RoomUser {
            room_id: String::new(),
            nickname: None,
            status: None,
        });
        let status = data
            .live_room
            .map(|r| r.status)
            .or(user.status)
            .unwrap_or(0);
        Ok(RoomInfo {
            live: status == ROOM_LIVE && !user.room_id.is_empty(),
            room_id: user.room_id,
            nickname: user.nickname.filter(|n| !n.is_empty()),
        })
    }

    /// Which of these rooms are live, in one request.
    pub async fn alive(&self, rooms: &[String]) -> Result<Vec<(String, bool)>, CallError> {
        let ids = rooms.join(",");
        let url = Self::url(
            &self.endpoints.webcast,
            "/webcast/room/check_alive/",
            &[("aid", AID), ("room_ids", &ids)],
        );
        let a = self.get(url, &[]).await?;
        let answer: AliveAnswer = a.json()?;
        check_status(answer.status_code)?;
        Ok(answer
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let id = if r.room_id_str.is_empty() {
                    r.room_id.map(|n| n.to_string()).unwrap_or_default()
                } else {
                    r.room_id_str
                };
                (id, r.alive)
            })
            .collect())
    }

    /// The session cookie TikTok's pages hand to any visitor (`ttwid`), without a login.
    pub async fn session_cookie(&self, user: &str) -> Result<String, CallError> {
        let url = Self::url(&self.endpoints.web, &format!("/@{user}/live"), &[]);
        let a = self.get(url, &[]).await?;
        let cookie = a
            .cookies
            .iter()
            .filter(|c| c.starts_with("ttwid=") || c.starts_with("tt_csrf_token="))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if cookie.is_empty() {
            // TikTok hands every visitor this cookie; a page without one is its verify wall.
            return Err(CallError::RateLimited { captcha: true });
        }
        Ok(cookie)
    }

    /// The room's first fetch: where its WebSocket is, the cursor to start from, the heartbeat.
    /// Through the signing service when one is configured (`key` is its API key).
    pub async fn first_fetch(
        &self,
        room_id: &str,
        cookie: &str,
        key: Option<&str>,
    ) -> Result<Join, CallError> {
        let query = [
            ("aid", AID),
            ("app_name", "tiktok_web"),
            ("device_platform", "web"),
            ("room_id", room_id),
            ("resp_content_type", "protobuf"),
            ("did_rule", "3"),
            ("version_code", "180800"),
            ("cursor", ""),
            ("internal_ext", ""),
        ];
        let (url, headers) = match (&self.endpoints.signer, key) {
            (Some(signer), Some(key)) => (
                Self::url(&signer.url, "/webcast/fetch/", &query),
                vec![("x-api-key", key.to_owned()), ("cookie", cookie.to_owned())],
            ),
            _ => (
                Self::url(&self.endpoints.webcast, "/webcast/im/fetch/", &query),
                vec![("cookie", cookie.to_owned())],
            ),
        };
        let a = self.get(url, &headers).await?;
        if a.html {
            // A verify page instead of protobuf: TikTok wants a captcha solved.
            return Err(CallError::RateLimited { captcha: true });
        }
        let fetched = FetchResult::decode(a.body.as_ref())
            .map_err(|e| CallError::Unreadable(format!("room fetch: {e}")))?;
        let base = if fetched.ws_url.is_empty() {
            DEFAULT_PUSH_URL
        } else {
            &fetched.ws_url
        };
        let mut url = url::Url::parse(base)
            .map_err(|e| CallError::Unreadable(format!("room fetch gave a bad push URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.extend_pairs(
                query.iter().filter(|(k, _)| {
                    !matches!(*k, "cursor" | "internal_ext" | "resp_content_type")
                }),
            );
            q.append_pair("cursor", &fetched.cursor);
            q.append_pair("internal_ext", &fetched.internal_ext);
            let mut params: Vec<_> = fetched.ws_params.iter().collect();
            params.sort();
            q.extend_pairs(params);
        }
        let heartbeat = match fetched.heartbeat_duration {
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => Duration::from_secs(10),
        };
        Ok(Join {
            url,
            cookie: cookie.to_owned(),
            heartbeat,
        })
    }
}

struct Answer {
    body: bytes::Bytes,
    cookies: Vec<String>,
    html: bool,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallError> {
        if self.html {
            return Err(CallError::RateLimited { captcha: true });
        }
        serde_json::from_slice(&self.body).map_err(|e| CallError::Unreadable(e.to_string()))
    }
}

/// The most of an answer Lifeline reads: room info and a fetch are a few kilobytes.
const MAX_ANSWER: usize = 4 << 20;

/// Reads a body, refusing one larger than [`MAX_ANSWER`] instead of holding it all.
async fn read_capped(mut resp: reqwest::Response) -> Result<bytes::Bytes, CallError> {
    let too_big = || CallError::Unreadable(format!("an answer over {} MiB", MAX_ANSWER >> 20));
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(too_big());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(CallError::of)? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn check_status(code: i64) -> Result<(), CallError> {
    match code {
        0 => Ok(()),
        STATUS_USER_NOT_FOUND => Err(CallError::NotFound),
        STATUS_VERIFY => Err(CallError::RateLimited { captcha: true }),
        STATUS_TOO_MANY => Err(CallError::RateLimited { captcha: false }),
        other => Err(CallError::Unreadable(format!("statusCode {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_what_the_engine_must_do() {
        assert_eq!(check_status(0), Ok(()));
        assert_eq!(
            check_status(STATUS_USER_NOT_FOUND),
            Err(CallError::NotFound)
        );
        assert_eq!(
            check_status(STATUS_VERIFY),
            Err(CallError::RateLimited { captcha: true })
        );
        assert_eq!(CallError::NotFound.reason(), Reason::NotFound);
        assert_eq!(
            CallError::RateLimited { captcha: false }.reason(),
            Reason::RateLimited
        );
    }

    #[test]
    fn room_info_answers_parse() {
        let live: RoomAnswer = serde_json::from_str(
            r#"{"statusCode":0,"data":{"user":{"roomId":"7312","nickname":"Toko Mawar","status":2},"liveRoom":{"status":2}}}"#,
        )
        .expect("parses");
        let data = live.data.expect("data");
        assert_eq!(data.user.expect("user").room_id, "7312");
        assert_eq!(data.live_room.expect("room").status, ROOM_LIVE);
    }
}
