use chrono::{Duration, TimeZone};

use super::*;
use crate::model::{AccountKind, NewAccount};
use crate::state::{Reason, State, TriggeredBy};
use crate::store::tests::temp_store;
use crate::time::{Timestamp, parse_time};

fn t(s: &str) -> Timestamp {
    parse_time(s).expect("time")
}

/// Two accounts; `a` connected 08:00–09:00 and 10:00–(open), `b` connected 08:30–08:45.
async fn fixture() -> (tempfile::TempDir, Store, AccountId, AccountId) {
    let (tmp, store) = temp_store().await;
    let a = store
        .add_account(
            NewAccount::new(AccountKind::Websocket, "=HYPERLINK(\"x\") 🍜").with_url("ws://h/a"),
        )
        .await
        .expect("add");
    let b = store
        .add_account(NewAccount::new(AccountKind::Websocket, "متجر").with_url("ws://h/b"))
        .await
        .expect("add");
    let drop = |at: Timestamp| State::Backoff {
        attempt: 1,
        retry_at: at + Duration::seconds(1),
        reason: Reason::Stalled,
    };
    let steps = [
        (a.id, State::Connected, "2026-11-01T08:00:00Z"),
        (b.id, State::Connected, "2026-11-01T08:30:00Z"),
        (
            b.id,
            drop(t("2026-11-01T08:45:00Z")),
            "2026-11-01T08:45:00Z",
        ),
        (
            a.id,
            drop(t("2026-11-01T09:00:00Z")),
            "2026-11-01T09:00:00Z",
        ),
        (a.id, State::Connected, "2026-11-01T10:00:00Z"),
    ];
    for (id, state, at) in steps {
        store
            .record_transition(
                id,
                state,
                Some("@SUM(1+1)".into()),
                TriggeredBy::Engine,
                t(at),
            )
            .await
            .expect("transition");
    }
    (tmp, store, a.id, b.id)
}

async fn export(store: &Store, kind: ExportKind, filter: ExportFilter) -> Vec<csv::StringRecord> {
    let (n, buf) = export_csv(store, kind, filter, Vec::new(), |_| {})
        .await
        .expect("export");
    let mut reader = csv::Reader::from_reader(buf.as_slice());
    let header = reader.headers().expect("header").clone();
    assert_eq!(header.iter().collect::<Vec<_>>(), kind.header());
    let rows: Vec<_> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(rows.len() as u64, n);
    rows
}

#[tokio::test]
async fn sessions_export_has_times_durations_and_neutralised_names() {
    let (_tmp, store, a, _b) = fixture().await;
    // A linked WhatsApp number's phone number goes with it (the last column, empty for others).
    let number = crate::model::Identity {
        id: "+6281234567890".into(),
        name: Some("Mawar".into()),
    };
    store.set_identity(a, &number).await.expect("identity");
    let rows = export(&store, ExportKind::Sessions, ExportFilter::default()).await;
    assert_eq!(rows.len(), 3);
    // Starting with `+`, it is neutralised like any such cell (spreadsheets keep it as text).
    assert_eq!(&rows[0][7], "'+6281234567890");
    assert_eq!(&rows[1][7], "");
    let first = &rows[0];
    assert_eq!(&first[1], a.0.to_string());
    assert_eq!(&first[2], "'=HYPERLINK(\"x\") 🍜");
    assert_eq!(&first[3], "2026-11-01T08:00:00.000Z");
    assert_eq!(&first[4], "2026-11-01T09:00:00.000Z");
    assert_eq!(&first[5], "3600.000");
    assert_eq!(&first[6], "stalled");
    assert_eq!(&rows[1][2], "متجر");
    assert_eq!(&rows[1][5], "900.000");
    // The open session has no end and runs until now.
    assert_eq!(&rows[2][4], "");
    let open_s: f64 = rows[2][5].parse().expect("duration");
    let expected = (Utc::now() - t("2026-11-01T10:00:00Z")).num_seconds() as f64;
    assert!((open_s - expected).abs() < 5.0, "{open_s} vs {expected}");
}

#[tokio::test]
async fn filters_by_account_and_overlapping_range() {
    let (_tmp, store, a, b) = fixture().await;
    let only_b = export(
        &store,
        ExportKind::Sessions,
        ExportFilter {
            account: Some(b),
            range: TimeRange::all(),
        },
    )
    .await;
    assert_eq!(only_b.len(), 1);
    assert_eq!(&only_b[0][1], b.0.to_string());
    // 08:50–09:30 overlaps only a's first session (b ended 08:45, a's second starts 10:00).
    let range = TimeRange::new(
        Some(t("2026-11-01T08:50:00Z")),
        Some(t("2026-11-01T09:30:00Z")),
    )
    .expect("range");
    let rows = export(
        &store,
        ExportKind::Sessions,
        ExportFilter {
            account: None,
            range,
        },
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1], a.0.to_string());
    // Since 11:00 still catches the open session.
    let range = TimeRange::new(Some(t("2026-11-01T11:00:00Z")), None).expect("range");
    let rows = export(
        &store,
        ExportKind::Sessions,
        ExportFilter {
            account: None,
            range,
        },
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][4], "");
}

#[tokio::test]
async fn events_export_filters_half_open_range_and_neutralises_detail() {
    let (_tmp, store, a, _b) = fixture().await;
    let all = export(&store, ExportKind::Events, ExportFilter::default()).await;
    assert_eq!(all.len(), 5);
    assert_eq!(&all[0][7], "'@SUM(1+1)");
    assert_eq!(&all[0][8], "engine");
    let range = TimeRange::new(
        Some(t("2026-11-01T08:30:00Z")),
        Some(t("2026-11-01T10:00:00Z")),
    )
    .expect("range");
    let rows = export(
        &store,
        ExportKind::Events,
        ExportFilter {
            account: Some(a),
            range,
        },
    )
    .await;
    assert_eq!(rows.len(), 1, "only a's 09:00 drop: 10:00 is excluded");
    assert_eq!(&rows[0][1], "2026-11-01T09:00:00.000Z");
    assert_eq!(&rows[0][4], "connected");
    assert_eq!(&rows[0][5], "backoff");
    assert_eq!(&rows[0][6], "stalled");
}

#[tokio::test]
async fn unknown_account_filter_is_an_input_error() {
    let (_tmp, store, _a, _b) = fixture().await;
    let err = export_csv(
        &store,
        ExportKind::Events,
        ExportFilter {
            account: Some(AccountId(77)),
            range: TimeRange::all(),
        },
        Vec::new(),
        |_| {},
    )
    .await
    .expect_err("unknown");
    assert!(matches!(
        err,
        Error::Input(crate::InputError::UnknownAccount(77))
    ));
}

#[tokio::test]
async fn export_to_path_replaces_the_file_only_when_complete() {
    let (tmp, store, _a, _b) = fixture().await;
    let path = tmp.path().join("out.csv");
    std::fs::write(&path, "old").expect("write");
    let n = export_to_path(
        &store,
        ExportKind::Events,
        ExportFilter::default(),
        &path,
        |_| {},
    )
    .await
    .expect("export");
    assert_eq!(n, 5);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("event_id,at,"));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty());
    // A failing export (unknown account) leaves the previous file intact.
    let bad = ExportFilter {
        account: Some(AccountId(99)),
        range: TimeRange::all(),
    };
    assert!(
        export_to_path(&store, ExportKind::Events, bad, &path, |_| {})
            .await
            .is_err()
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
}

#[test]
fn neutralises_every_formula_trigger_and_nothing_else() {
    for bad in ["=1+1", "+1", "-1", "@A1", "\tx", "\rx"] {
        assert!(neutralize(bad).starts_with('\''), "{bad:?}");
    }
    for ok in ["Shop", "1-2", "a=b", "🍜=", "متجر", ""] {
        assert_eq!(neutralize(ok), ok);
    }
    let _ = Utc.timestamp_opt(0, 0);
}
