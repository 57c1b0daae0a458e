//! From whatsapp-rust events to the engine's words: each library event becomes a connector event
//! or ends the connection with a typed reason. Pure, so every case is tested by constructing the
//! library's own event values.

use chrono::Duration as ChronoDuration;
use lifeline_engine::connector::{ConnEvent, LinkCode, LinkMode};
use lifeline_engine::state::Reason;
use lifeline_engine::time::Timestamp;
use whatsapp_rust::wacore::net::DisconnectReason;
use whatsapp_rust::wacore::types::events::{ConnectFailureReason, Event};

/// What to do with one library event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Tell the supervisor.
    Emit(ConnEvent),
    /// The connection is over. `wipe` deletes the device store (the phone removed this device).
    End {
        reason: Reason,
        detail: Option<String>,
        wipe: bool,
    },
    /// Nothing to report (but the event still proves the connection is alive).
    Alive,
    /// The phone accepted the link. The server now ends this connection (stream error 515, which
    /// the library handles without an event) and the device must log in on a new one.
    Linked,
}

fn end(reason: Reason, detail: impl Into<Option<String>>) -> Mapped {
    Mapped::End {
        reason,
        detail: detail.into(),
        wipe: false,
    }
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// Maps one event at `now`. `phone` is the number being paired by code, if any.
pub fn map(event: &Event, now: Timestamp, phone: Option<&str>) -> Mapped {
    match event {
        Event::Connected(_) => Mapped::Emit(ConnEvent::Connected { via: None }),
        Event::PairingQrCode(q) => Mapped::Emit(ConnEvent::Link(Box::new(LinkCode {
            mode: LinkMode::Qr,
            code: q.code.clone(),
            expires_at: now + to_chrono(q.timeout),
        }))),
        Event::PairingCode(p) => Mapped::Emit(ConnEvent::Link(Box::new(LinkCode {
            mode: LinkMode::PhoneCode {
                phone: phone.unwrap_or_default().to_owned(),
            },
            code: p.code.clone(),
            expires_at: now + to_chrono(p.timeout),
        }))),
        Event::PairingQrCodesExhausted(_) => end(
            Reason::QrExpired,
            Some("no QR code was scanned in time".to_owned()),
        ),
        Event::PairingCodeError(e) => end(Reason::PairingFailed, Some(e.error.clone())),
        Event::PairError(e) => end(Reason::PairingFailed, Some(e.error.clone())),
        Event::QrScannedWithoutMultidevice(_) => end(
            Reason::PairingFailed,
            Some(
                "the phone does not support linked devices; update WhatsApp on the phone"
                    .to_owned(),
            ),
        ),
        Event::LoggedOut(l) => Mapped::End {
            reason: Reason::LoggedOut,
            detail: Some(format!(
                "logged out by the server (code {})",
                l.reason.code()
            )),
            wipe: true,
        },
        Event::StreamReplaced(_) => end(
            Reason::Replaced,
            Some("another client connected with this device's credentials".to_owned()),
        ),
        Event::TemporaryBan(b) => end(
            Reason::Banned {
                until: Some(now + b.expire),
            },
            Some(format!("temporary ban, code {}", b.code.code())),
        ),
        Event::ClientOutdated(_) => end(Reason::Outdated, None),
        Event::ConnectFailure(f) => connect_failure(f.reason, f.message.as_deref()),
        Event::StreamError(e) => match e.code.as_str() {
            "515" => end(Reason::RestartRequired, None),
            "429" => end(Reason::RateLimited, Some("stream error 429".to_owned())),
            "503" => end(
                Reason::Refused { status: Some(503) },
                Some("stream error 503".to_owned()),
            ),
            code => end(
                Reason::ClosedByPeer { code: None },
                Some(format!("stream error {code}")),
            ),
        },
        Event::Disconnected(d) => match &d.reason {
            DisconnectReason::ServerClose { code, reason } => end(
                Reason::ClosedByPeer { code: *code },
                (!reason.is_empty()).then(|| reason.clone()),
            ),
            DisconnectReason::StreamEnded => end(Reason::ClosedByPeer { code: None }, None),
            DisconnectReason::ReadError(e) => end(Reason::Network, Some(e.clone())),
            _ => end(Reason::Network, Some("connection lost".to_owned())),
        },
        Event::PairSuccess(_) => Mapped::Linked,
        // Messages, receipts, presence, …: proof of life.
        _ => Mapped::Alive,
    }
}

fn connect_failure(reason: ConnectFailureReason, message: Option<&str>) -> Mapped {
    let code = reason.code();
    let detail = Some(match message {
        Some(m) => format!("connect failure {code}: {m}"),
        None => format!("connect failure {code}"),
    });
    if reason.is_logged_out() {
        return Mapped::End {
            reason: Reason::LoggedOut,
            detail,
            wipe: true,
        };
    }
    match reason {
        ConnectFailureReason::ClientOutdated | ConnectFailureReason::BadUserAgent => {
            end(Reason::Outdated, detail)
        }
        ConnectFailureReason::TempBanned => end(Reason::Banned { until: None }, detail),
        _ => end(
            Reason::Refused {
                status: u16::try_from(code).ok(),
            },
            detail,
        ),
    }
}

#[cfg(test)]
mod tests {
    use whatsapp_rust::wacore::types::events::*;

    use super::*;
    use lifeline_engine::time::parse_time;

    fn now() -> Timestamp {
        parse_time("2026-11-23T08:00:00Z").expect("time")
    }

    fn reason_of(m: Mapped) -> (Reason, bool) {
        match m {
            Mapped::End { reason, wipe, .. } => (reason, wipe),
            other => panic!("expected End, got {other:?}"),
        }
    }

    #[test]
    fn connected_and_link_codes_are_emitted_with_expiry() {
        assert_eq!(
            map(&Event::Connected(Connected::builder().build()), now(), None),
            Mapped::Emit(ConnEvent::Connected { via: None })
        );
        let qr = Event::PairingQrCode(
            PairingQrCode::builder()
                .code("2@abc,def,ghi".into())
                .timeout(std::time::Duration::from_secs(60))
                .build(),
        );
        match map(&qr, now(), None) {
            Mapped::Emit(ConnEvent::Link(code)) => {
                assert_eq!(code.mode, LinkMode::Qr);
                assert_eq!(code.code, "2@abc,def,ghi");
                assert_eq!(code.expires_at, now() + ChronoDuration::seconds(60));
                assert!(
                    !format!("{code:?}").contains("abc"),
                    "QR payloads never reach logs"
                );
            }
            other => panic!("{other:?}"),
        }
        let pc = Event::PairingCode(
            PairingCode::builder()
                .code("ABCD1234".into())
                .timeout(std::time::Duration::from_secs(180))
                .build(),
        );
        match map(&pc, now(), Some("+6281234567890")) {
            Mapped::Emit(ConnEvent::Link(code)) => {
                assert_eq!(
                    code.mode,
                    LinkMode::PhoneCode {
                        phone: "+6281234567890".into()
                    }
                );
                assert_eq!(code.expires_at, now() + ChronoDuration::seconds(180));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linking_failures_need_the_operator() {
        let exhausted = Event::PairingQrCodesExhausted(
            PairingQrCodesExhausted::builder()
                .disconnected(true)
                .build(),
        );
        assert_eq!(
            reason_of(map(&exhausted, now(), None)),
            (Reason::QrExpired, false)
        );
        let no_md =
            Event::QrScannedWithoutMultidevice(QrScannedWithoutMultidevice::builder().build());
        assert_eq!(reason_of(map(&no_md, now(), None)).0, Reason::PairingFailed);
    }

    #[test]
    fn logout_replacement_ban_and_outdated_map_to_their_reasons() {
        let logged_out = Event::LoggedOut(
            LoggedOut::builder()
                .on_connect(true)
                .reason(ConnectFailureReason::LoggedOut)
                .build(),
        );
        assert_eq!(
            reason_of(map(&logged_out, now(), None)),
            (Reason::LoggedOut, true)
        );
        let replaced = Event::StreamReplaced(StreamReplaced::builder().build());
        assert_eq!(
            reason_of(map(&replaced, now(), None)),
            (Reason::Replaced, false)
        );
        let ban = Event::TemporaryBan(
            TemporaryBan::builder()
                .code(TempBanReason::from(101))
                .expire(ChronoDuration::hours(1))
                .build(),
        );
        assert_eq!(
            reason_of(map(&ban, now(), None)).0,
            Reason::Banned {
                until: Some(now() + ChronoDuration::hours(1))
            }
        );
        let outdated = Event::ClientOutdated(ClientOutdated::builder().build());
        assert_eq!(reason_of(map(&outdated, now(), None)).0, Reason::Outdated);
    }

    #[test]
    fn connect_failures_are_classified() {
        let f = |r: ConnectFailureReason| {
            Event::ConnectFailure(ConnectFailure::builder().reason(r).build())
        };
        assert_eq!(
            reason_of(map(&f(ConnectFailureReason::LoggedOut), now(), None)),
            (Reason::LoggedOut, true)
        );
        assert_eq!(
            reason_of(map(&f(ConnectFailureReason::AccountLocked), now(), None)),
            (Reason::LoggedOut, true)
        );
        assert_eq!(
            reason_of(map(&f(ConnectFailureReason::ClientOutdated), now(), None)).0,
            Reason::Outdated
        );
        assert_eq!(
            reason_of(map(
                &f(ConnectFailureReason::ServiceUnavailable),
                now(),
                None
            ))
            .0,
            Reason::Refused { status: Some(503) }
        );
        assert_eq!(
            reason_of(map(&f(ConnectFailureReason::TempBanned), now(), None)).0,
            Reason::Banned { until: None }
        );
    }

    #[test]
    fn drops_and_stream_errors_back_off_by_class() {
        let d =
            |r: DisconnectReason| Event::Disconnected(Disconnected::builder().reason(r).build());
        assert_eq!(
            reason_of(map(
                &d(DisconnectReason::ServerClose {
                    code: Some(1011),
                    reason: String::new()
                }),
                now(),
                None
            ))
            .0,
            Reason::ClosedByPeer { code: Some(1011) }
        );
        assert_eq!(
            reason_of(map(&d(DisconnectReason::StreamEnded), now(), None)).0,
            Reason::ClosedByPeer { code: None }
        );
        assert_eq!(
            reason_of(map(
                &d(DisconnectReason::ReadError("reset".into())),
                now(),
                None
            ))
            .0,
            Reason::Network
        );
        let se = |c: &str| Event::StreamError(StreamError::builder().code(c.into()).build());
        assert_eq!(
            reason_of(map(&se("515"), now(), None)).0,
            Reason::RestartRequired
        );
        assert_eq!(
            reason_of(map(&se("429"), now(), None)).0,
            Reason::RateLimited
        );
        assert_eq!(
            reason_of(map(&se("999"), now(), None)).0,
            Reason::ClosedByPeer { code: None }
        );
    }
}
