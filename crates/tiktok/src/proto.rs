//! The few TikTok LIVE protobuf messages Lifeline reads and writes, defined by hand with prost's
//! derive (no code generation step). Field numbers follow TikTok's webcast schema; everything
//! Lifeline does not use is left out, and prost skips unknown fields when decoding.
//!
//! ```proto
//! message PushFrame { uint64 seq_id = 1; uint64 log_id = 2; map<string,string> headers = 5;
//!                     string payload_encoding = 6; string payload_type = 7; bytes payload = 8; }
//! message FetchResult { repeated Message messages = 1; string cursor = 2; int64 fetch_interval = 3;
//!                       int64 now = 4; string internal_ext = 5; map<string,string> ws_params = 7;
//!                       int64 heartbeat_duration = 8; bool needs_ack = 9; string ws_url = 10; }
//! message Message { string method = 1; bytes payload = 2; int64 msg_id = 3; }
//! message ControlMessage { int32 action = 2; }            // 3: the broadcast ended
//! message RoomUserSeqMessage { int64 total = 3; }         // viewers now
//! message ChatMessage { string content = 3; }
//! message LikeMessage { int64 count = 2; int64 total = 3; }
//! message GiftMessage { int64 gift_id = 2; int64 repeat_count = 5; int32 repeat_end = 9; GiftDetails gift = 15; }
//! message GiftDetails { int32 gift_type = 11; }          // 1: a streakable gift
//! message SocialMessage { int64 action = 4; }            // 1: follow, 3: share
//! ```

use std::collections::HashMap;

/// The envelope of every WebSocket frame, both ways.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushFrame {
    #[prost(uint64, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, tag = "2")]
    pub log_id: u64,
    #[prost(map = "string, string", tag = "5")]
    pub headers: HashMap<String, String>,
    #[prost(string, tag = "6")]
    pub payload_encoding: String,
    /// `msg` (server messages), `hb` (heartbeat), `ack` (acknowledgement), `close`.
    #[prost(string, tag = "7")]
    pub payload_type: String,
    #[prost(bytes = "vec", tag = "8")]
    pub payload: Vec<u8>,
}

/// A batch of messages: the answer of `im/fetch` and the payload of a `msg` frame.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchResult {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Message>,
    #[prost(string, tag = "2")]
    pub cursor: String,
    #[prost(int64, tag = "3")]
    pub fetch_interval: i64,
    #[prost(int64, tag = "4")]
    pub now: i64,
    #[prost(string, tag = "5")]
    pub internal_ext: String,
    #[prost(map = "string, string", tag = "7")]
    pub ws_params: HashMap<String, String>,
    /// Milliseconds between the client's heartbeats.
    #[prost(int64, tag = "8")]
    pub heartbeat_duration: i64,
    #[prost(bool, tag = "9")]
    pub needs_ack: bool,
    #[prost(string, tag = "10")]
    pub ws_url: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// `WebcastChatMessage`, `WebcastLikeMessage`, … (see [`Method`]).
    #[prost(string, tag = "1")]
    pub method: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub msg_id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlMessage {
    #[prost(int32, tag = "2")]
    pub action: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RoomUserSeqMessage {
    #[prost(int64, tag = "3")]
    pub total: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChatMessage {
    #[prost(string, tag = "3")]
    pub content: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LikeMessage {
    #[prost(int64, tag = "2")]
    pub count: i64,
    /// The room's likes so far, when the server sends it.
    #[prost(int64, tag = "3")]
    pub total: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GiftMessage {
    #[prost(int64, tag = "2")]
    pub gift_id: i64,
    #[prost(int64, tag = "5")]
    pub repeat_count: i64,
    /// 1 on the last message of a streak.
    #[prost(int32, tag = "9")]
    pub repeat_end: i32,
    #[prost(message, optional, tag = "15")]
    pub gift: Option<GiftDetails>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GiftDetails {
    #[prost(int32, tag = "11")]
    pub gift_type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SocialMessage {
    #[prost(int64, tag = "4")]
    pub action: i64,
}

/// `ControlMessage.action` when the creator ended the broadcast.
pub const CONTROL_STREAM_ENDED: i32 = 3;
/// `GiftDetails.gift_type` of gifts sent in streaks (counted once, at the streak's end).
pub const GIFT_STREAKABLE: i32 = 1;
/// `SocialMessage.action` of a follow.
pub const SOCIAL_FOLLOW: i64 = 1;

/// The message methods Lifeline counts.
pub mod method {
    pub const CONTROL: &str = "WebcastControlMessage";
    pub const ROOM_USER_SEQ: &str = "WebcastRoomUserSeqMessage";
    pub const CHAT: &str = "WebcastChatMessage";
    pub const LIKE: &str = "WebcastLikeMessage";
    pub const GIFT: &str = "WebcastGiftMessage";
    pub const SOCIAL: &str = "WebcastSocialMessage";
}

/// Encodes a message into a [`Message`] of the given method.
pub fn message(method: &str, payload: &impl prost::Message) -> Message {
    Message {
        method: method.to_owned(),
        payload: payload.encode_to_vec(),
        msg_id: 0,
    }
}
