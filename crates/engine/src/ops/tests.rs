//! The operations layer without a running supervisor: what the CLI's commands do offline, and
//! how a command handed to a supervisor that goes away is still carried out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::connector::{ConnEvent, ConnectRequest, Connector, Connectors};
use crate::datadir::DataDir;
use crate::model::AccountKind;
use crate::state::{Reason, State, TriggeredBy};
use crate::store::Store;

/// Counts what the operations ask of a connector (they never connect offline).
#[derive(Debug, Default)]
struct Counting {
    forgotten: AtomicUsize,
}

impl Connector for Counting {
    fn run(
        &self,
        _: ConnectRequest,
        _: mpsc::Sender<ConnEvent>,
        _: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }

    fn forget(&self, _: &Account) -> Result<()> {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn setup() -> (tempfile::TempDir, DataDir, Store, Arc<Counting>, Queued) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = DataDir::resolve(Some(tmp.path().join("data"))).expect("dir");
    let store = Store::open(&dir).await.expect("store");
    let counting = Arc::new(Counting::default());
    let connectors = Connectors::new().with(AccountKind::Websocket, counting.clone());
    let ops = Queued::new(dir.clone(), store.clone(), connectors);
    (tmp, dir, store, counting, ops)
}

async fn ws(ops: &Queued, name: &str) -> Account {
    ops.add(NewAccount::new(AccountKind::Websocket, name).with_url("ws://127.0.0.1:9/x"))
        .await
        .expect("add")
}

#[tokio::test]
async fn offline_removal_records_why_and_lets_the_connector_forget() {
    let (_tmp, _dir, store, counting, ops) = setup().await;
    let a = ws(&ops, "a").await;
    let paused = State::Paused {
        until: Some(Utc::now() + Duration::minutes(5)),
        reason: Reason::BreakerOpen,
    };
    store
        .record_transition(a.id, paused, None, TriggeredBy::Engine, Utc::now())
        .await
        .expect("paused");
    let removed = ops.remove(a.id).await.expect("remove");
    assert_eq!(removed.name, "a");
    assert_eq!(
        counting.forgotten.load(Ordering::SeqCst),
        1,
        "device keys wiped"
    );
    assert!(store.accounts().await.expect("list").is_empty());
    let last: (String, Option<String>, String) = sqlx::query_as(
        "SELECT to_state, reason, triggered_by FROM events WHERE account_id = ? ORDER BY id DESC LIMIT 1",
    )
    .bind(a.id.0)
    .fetch_one(store.pool())
    .await
    .expect("event");
    assert_eq!(
        last,
        ("stopped".into(), Some("removed".into()), "operator".into())
    );
    assert!(matches!(
        ops.remove(a.id).await.expect_err("gone"),
        crate::Error::Input(crate::InputError::UnknownAccount(_))
    ));
}

#[tokio::test]
async fn an_offline_stop_after_a_crash_first_closes_the_session_at_the_last_heartbeat() {
    let (_tmp, _dir, store, _counting, ops) = setup().await;
    let a = ws(&ops, "a").await;
    let t0 = Utc::now() - Duration::minutes(30);
    let run = store.begin_run(t0).await.expect("run");
    store
        .record_transition(a.id, State::Connected, None, TriggeredBy::Engine, t0)
        .await
        .expect("connected");
    let heartbeat = t0 + Duration::minutes(10);
    store.heartbeat(run.id, heartbeat).await.expect("heartbeat");
    // The run crashed (no clean marker). The operator stops the account with nothing running.
    assert_eq!(
        ops.act(Action::Stop, Target::One(a.id))
            .await
            .expect("stop"),
        1
    );
    let a = store.account(a.id).await.expect("account");
    assert!(!a.desired_running);
    assert_eq!(
        a.state,
        State::Stopped {
            reason: Some(Reason::Crashed)
        },
        "already stopped by the crash: the stop records nothing more"
    );
    let ended: i64 = sqlx::query_scalar("SELECT ended_at FROM sessions WHERE account_id = ?")
        .bind(a.id.0)
        .fetch_one(store.pool())
        .await
        .expect("session");
    assert_eq!(
        ended,
        crate::time::to_ms(heartbeat),
        "ended when the crashed run was last seen"
    );
}

#[tokio::test]
async fn an_offline_reset_closes_the_breaker_through_the_writer() {
    let (_tmp, _dir, store, _counting, ops) = setup().await;
    let a = ws(&ops, "a").await;
    let open = crate::policy::breaker::Breaker::Open {
        until: Utc::now() + Duration::minutes(10),
        cooldown_s: 600,
    };
    store
        .save_breaker(a.id, &open, Utc::now())
        .await
        .expect("open");
    assert_eq!(ops.act(Action::Reset, Target::All).await.expect("reset"), 1);
    assert!(!store.breaker(a.id).await.expect("breaker").is_open());
}

#[tokio::test]
async fn a_command_the_supervisor_never_answers_is_applied_here_once_it_is_gone() {
    let (_tmp, dir, store, _counting, ops) = setup().await;
    let a = ws(&ops, "a").await;
    // A supervisor holds the data dir but will never read its commands; it goes away shortly.
    let lock = dir.lock().expect("lock");
    let stop = tokio::spawn(async move { ops.act(Action::Stop, Target::One(a.id)).await });
    while store.last_command_id().await.expect("commands") == 0 {
        tokio::task::yield_now().await;
    }
    drop(lock);
    assert_eq!(stop.await.expect("task").expect("stop"), 1);
    assert!(!store.account(a.id).await.expect("account").desired_running);
    // The queued copy was withdrawn, so a later supervisor does not apply it again.
    let outcome = store.command_outcome(1).await.expect("outcome");
    assert!(matches!(
        outcome,
        Some(crate::store::CommandOutcome::Failed { .. })
    ));
}

#[test]
fn every_op_reads_back_as_written() {
    let id = AccountId(7);
    let mut ops = vec![
        Op::Add(id),
        Op::Remove(id),
        Op::Reload(id),
        Op::Link(id, LinkMode::Qr),
        Op::Link(
            id,
            LinkMode::PhoneCode {
                phone: "+628123".into(),
            },
        ),
    ];
    for a in Action::ALL {
        if Action::for_one(a.as_str()).is_some() {
            ops.push(Op::Act(a, Target::One(id)));
        }
        if Action::for_all(&format!("{}-all", a.as_str())).is_some() {
            ops.push(Op::Act(a, Target::All));
        }
    }
    for op in ops {
        let (name, account, arg) = op.encode();
        assert_eq!(Op::decode(&name, account, arg.as_deref()), Some(op));
    }
    assert_eq!(Op::decode("explode", Some(id), None), None);
    assert_eq!(
        Op::decode("check", Some(id), None),
        None,
        "check is fleet-wide"
    );
    assert_eq!(Op::decode("start", None, None), None, "needs an account");
}
