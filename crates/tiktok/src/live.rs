//! One live broadcast's counts, kept while its feed runs and reported to the engine as a
//! remote session (the engine stores and exports it without knowing what it counts).

use lifeline_engine::connector::RemoteSession;
use lifeline_engine::time::Timestamp;
use prost::Message as _;

use crate::proto::{self, method};

/// How a live ended, as exported in `ended_how`.
pub const END_ENDED: &str = "ended";
/// The live was over by the time Lifeline looked again (it was stopped, or the feed was down).
pub const END_MISSED: &str = "ended-while-away";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub room_id: String,
    pub started_at: Timestamp,
    pub viewers: i64,
    pub peak_viewers: i64,
    viewer_sum: i64,
    viewer_samples: i64,
    pub likes: i64,
    pub comments: i64,
    pub gifts: i64,
    pub follows: i64,
}

impl Live {
    pub fn new(room_id: String, started_at: Timestamp) -> Self {
        Self {
            room_id,
            started_at,
            viewers: 0,
            peak_viewers: 0,
            viewer_sum: 0,
            viewer_samples: 0,
            likes: 0,
            comments: 0,
            gifts: 0,
            follows: 0,
        }
    }

    /// Continues a live recorded earlier (before a drop or a restart).
    pub fn resume(s: &RemoteSession) -> Self {
        let m = |n: &str| s.metric(n).unwrap_or(0);
        Self {
            room_id: s.key.clone(),
            started_at: s.started_at,
            viewers: 0,
            peak_viewers: m("peak_viewers"),
            viewer_sum: m("avg_viewers") * m("viewer_samples"),
            viewer_samples: m("viewer_samples"),
            likes: m("likes"),
            comments: m("comments"),
            gifts: m("gifts"),
            follows: m("follows"),
        }
    }

    pub fn average_viewers(&self) -> i64 {
        if self.viewer_samples == 0 {
            0
        } else {
            self.viewer_sum / self.viewer_samples
        }
    }

    /// Counts one message. Returns true when it says the broadcast ended.
    pub fn apply(&mut self, msg: &proto::Message) -> bool {
        let p = msg.payload.as_slice();
        match msg.method.as_str() {
            method::CONTROL => {
                if let Ok(c) = proto::ControlMessage::decode(p) {
                    return c.action == proto::CONTROL_STREAM_ENDED;
                }
            }
            method::ROOM_USER_SEQ => {
                if let Ok(m) = proto::RoomUserSeqMessage::decode(p) {
                    self.viewers = m.total.max(0);
                    self.peak_viewers = self.peak_viewers.max(self.viewers);
                    self.viewer_sum = self.viewer_sum.saturating_add(self.viewers);
                    self.viewer_samples += 1;
                }
            }
            method::CHAT if proto::ChatMessage::decode(p).is_ok() => self.comments += 1,
            method::LIKE => {
                if let Ok(m) = proto::LikeMessage::decode(p) {
                    // The room's own total is exact (likes sent while the feed was down count
                    // too); without one, add the batch.
                    self.likes = if m.total > 0 {
                        self.likes.max(m.total)
                    } else {
                        self.likes.saturating_add(m.count.max(0))
                    };
                }
            }
            method::GIFT => {
                if let Ok(m) = proto::GiftMessage::decode(p) {
                    let streak = m
                        .gift
                        .as_ref()
                        .is_some_and(|g| g.gift_type == proto::GIFT_STREAKABLE);
                    // A streak repeats its message with a growing count; it counts once, done.
                    if !streak || m.repeat_end == 1 {
                        self.gifts = self.gifts.saturating_add(m.repeat_count.max(1));
                    }
                }
            }
            method::SOCIAL => {
                if let Ok(m) = proto::SocialMessage::decode(p)
                    && m.action == proto::SOCIAL_FOLLOW
                {
                    self.follows += 1;
                }
            }
            _ => {}
        }
        false
    }

    /// The live as the engine records it; `end` when it is over.
    pub fn session(&self, end: Option<(Timestamp, &str)>) -> RemoteSession {
        RemoteSession {
            key: self.room_id.clone(),
            started_at: self.started_at,
            ended_at: end.map(|(at, _)| at),
            end: end.map(|(_, how)| how.to_owned()),
            metrics: vec![
                ("peak_viewers".into(), self.peak_viewers),
                ("avg_viewers".into(), self.average_viewers()),
                ("likes".into(), self.likes),
                ("comments".into(), self.comments),
                ("gifts".into(), self.gifts),
                ("follows".into(), self.follows),
                ("viewer_samples".into(), self.viewer_samples),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        ChatMessage, ControlMessage, GiftDetails, GiftMessage, LikeMessage, RoomUserSeqMessage,
        SocialMessage, message,
    };

    fn at0() -> Timestamp {
        lifeline_engine::time::parse_time("2026-12-01T10:00:00Z").expect("time")
    }

    #[test]
    fn counts_each_kind_of_message_and_streaks_once() {
        let mut l = Live::new("7".into(), at0());
        for v in [10, 40, 25] {
            l.apply(&message(
                method::ROOM_USER_SEQ,
                &RoomUserSeqMessage { total: v },
            ));
        }
        l.apply(&message(method::LIKE, &LikeMessage { count: 5, total: 0 }));
        l.apply(&message(
            method::LIKE,
            &LikeMessage {
                count: 3,
                total: 120,
            },
        ));
        l.apply(&message(
            method::CHAT,
            &ChatMessage {
                content: "halo".into(),
            },
        ));
        let streak = |n, end| GiftMessage {
            gift_id: 5655,
            repeat_count: n,
            repeat_end: end,
            gift: Some(GiftDetails { gift_type: 1 }),
        };
        for (n, end) in [(1, 0), (2, 0), (3, 1)] {
            l.apply(&message(method::GIFT, &streak(n, end)));
        }
        l.apply(&message(
            method::GIFT,
            &GiftMessage {
                gift_id: 1,
                repeat_count: 1,
                repeat_end: 0,
                gift: Some(GiftDetails { gift_type: 2 }),
            },
        ));
        l.apply(&message(method::SOCIAL, &SocialMessage { action: 1 }));
        l.apply(&message(method::SOCIAL, &SocialMessage { action: 3 }));
        assert!(!l.apply(&message(method::CONTROL, &ControlMessage { action: 1 })));
        assert!(l.apply(&message(method::CONTROL, &ControlMessage { action: 3 })));
        assert_eq!(
            (
                l.peak_viewers,
                l.average_viewers(),
                l.likes,
                l.comments,
                l.gifts,
                l.follows
            ),
            (40, 25, 120, 1, 4, 1)
        );
    }

    #[test]
    fn a_resumed_live_carries_on_from_its_record() {
        let mut l = Live::new("9".into(), at0());
        l.apply(&message(
            method::ROOM_USER_SEQ,
            &RoomUserSeqMessage { total: 30 },
        ));
        l.apply(&message(
            method::CHAT,
            &ChatMessage {
                content: "a".into(),
            },
        ));
        let mut again = Live::resume(&l.session(None));
        again.apply(&message(
            method::ROOM_USER_SEQ,
            &RoomUserSeqMessage { total: 10 },
        ));
        again.apply(&message(
            method::CHAT,
            &ChatMessage {
                content: "b".into(),
            },
        ));
        assert_eq!(again.started_at, at0());
        assert_eq!(
            (again.comments, again.peak_viewers, again.average_viewers()),
            (2, 30, 20)
        );
    }
}
