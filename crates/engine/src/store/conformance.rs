//! The two backends answer alike: one scenario that calls every method of [`Store`] runs on a
//! fresh SQLite store and on a fresh fleet store (a throwaway PostgreSQL), and the two
//! transcripts must be the same line for line. Only what differs by nature is masked: times
//! taken from the clock while the scenario ran, and each store's random webhook-id prefix.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{Store, TransitionRecord};
use crate::connector::{LinkCode, LinkMode, RemoteSession};
use crate::model::{AccountChange, AccountId, AccountKind, HeaderRef, Identity, NewAccount};
use crate::ops::{Action, Op, Target};
use crate::policy::breaker::Breaker;
use crate::state::{Reason, State, StateKind, TriggeredBy};
use crate::store::{CommandOutcome, DeliveryFilter, HistoryPage};
use crate::time::TimeRange;
use crate::webhook::{Attempt, AttemptResult, DeliveryQueue, NewWebhook, WebhookUrl};

/// A fleet store in its own database of a throwaway PostgreSQL (alive while the returned
/// cluster is), or `None` where PostgreSQL is not installed and the test may skip.
async fn fleet_store(
    name: &str,
) -> Option<(lifeline_fleet::cluster::Cluster, lifeline_fleet::FleetStore)> {
    let cluster = lifeline_fleet::cluster::for_test()?;
    let url = cluster.database(name).expect("database");
    let fleet = lifeline_fleet::FleetStore::connect(&url, Some(lifeline_fleet::cluster::PASSWORD))
        .await
        .expect("fleet store");
    Some((cluster, fleet))
}

/// A fresh SQLite store and a fresh fleet store side by side (alive while this is), or `None`
/// where PostgreSQL is not installed and the test may skip.
struct Both {
    _cluster: lifeline_fleet::cluster::Cluster,
    _tmp: tempfile::TempDir,
    fleet: lifeline_fleet::FleetStore,
    sqlite: Store,
    postgres: Store,
}

impl Both {
    async fn new(name: &str) -> Option<Self> {
        let (cluster, fleet) = fleet_store(name).await?;
        let tmp = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open_path(&tmp.path().join("t.db"))
            .await
            .expect("sqlite store");
        let postgres = Store::fleet(&fleet);
        Some(Self {
            _cluster: cluster,
            _tmp: tmp,
            fleet,
            sqlite,
            postgres,
        })
    }
}

/// The scenario's own clock: every time it passes in is this plus some seconds.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0)
        .single()
        .expect("a valid time")
}

fn at(s: f64) -> DateTime<Utc> {
    t0() + Duration::milliseconds((s * 1000.0) as i64)
}

fn secret(name: &str) -> crate::model::SecretName {
    crate::model::SecretName::parse(name).expect("a secret name")
}

struct Transcript(Vec<String>);

impl Transcript {
    fn note(&mut self, what: &str, value: impl std::fmt::Debug) {
        self.0.push(format!("{what}: {value:?}"));
    }
}

fn sorted<K: Ord, V>(map: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    map.into_iter().collect()
}

/// Every method, with what it answered. Steps that a database would number differently after a
/// refused insert (PostgreSQL does not give back an identity value a failed insert took) come
/// last.
async fn scenario(store: &Store) -> Transcript {
    let mut t = Transcript(Vec::new());
    // `take!` notes what a call answered and hands it on; `step!` only notes it.
    macro_rules! take {
        ($what:expr, $call:expr) => {{
            let value = $call.await;
            t.note($what, &value);
            value
        }};
    }
    macro_rules! step {
        ($what:expr, $call:expr) => {{
            let _ = take!($what, $call);
        }};
    }

    // Secrets and accounts.
    step!("add secret", store.add_secret_name(&secret("proxy-pass")));
    step!("add secret", store.add_secret_name(&secret("api-token")));
    step!("secret exists", store.secret_exists(&secret("api-token")));
    step!("secret missing", store.secret_exists(&secret("nope")));
    step!("secret names", store.secret_names());
    let mut shop =
        NewAccount::new(AccountKind::Websocket, "Toko 🍜 \"Mawar\"").with_url("ws://127.0.0.1:9/a");
    shop.priority = 700;
    shop.country = Some("id".into());
    shop.proxy_url = Some("socks5://127.0.0.1:1080".into());
    shop.proxy_secret = Some(secret("proxy-pass"));
    shop.headers = vec![HeaderRef {
        name: "Authorization".into(),
        secret: secret("api-token"),
    }];
    let a = take!("add websocket", store.add_account(shop))
        .expect("added")
        .id;
    let mut phone = NewAccount::new(AccountKind::Whatsapp, "متجر الورد ‏٣");
    phone.desired_running = false;
    let b = take!("add whatsapp", store.add_account(phone))
        .expect("added")
        .id;
    let mut creator = NewAccount::new(AccountKind::Tiktok, "O'Brien's; DROP TABLE accounts;--")
        .with_url("@obrien");
    creator.notify_live = true;
    creator.muted = true;
    let c = take!("add tiktok", store.add_account(creator))
        .expect("added")
        .id;
    step!(
        "unknown secret",
        store.add_account({
            let mut n = NewAccount::new(AccountKind::Websocket, "x").with_url("ws://127.0.0.1:9/x");
            n.proxy_url = Some("socks5://127.0.0.1:1080".into());
            n.proxy_secret = Some(secret("nope"));
            n
        })
    );
    step!(
        "update",
        store.update_account(
            b,
            AccountChange {
                name: Some("Warung Bu Sri".into()),
                priority: Some(10),
                muted: Some(true),
                notify_live: None,
            }
        )
    );
    step!("desired", store.set_desired_running(b, true));
    step!(
        "desired of unknown",
        store.set_desired_running(AccountId(99), true)
    );
    step!(
        "identity",
        store.set_identity(
            b,
            &Identity {
                id: "+6281234567890".into(),
                name: Some("Bu Sri".into()),
            }
        )
    );
    step!("accounts", store.accounts());
    step!("account", store.account(b));
    step!("unknown account", store.account(AccountId(99)));
    step!(
        "using secret",
        store.accounts_using_secret(&secret("api-token"))
    );

    // Webhooks before transitions, so the outbox trigger writes their messages.
    let all = take!(
        "add webhook",
        store.add_webhook(NewWebhook {
            url: WebhookUrl::parse("http://127.0.0.1:9/all").expect("url"),
            events: None,
            accounts: None,
            secret_name: secret("webhook-all"),
        })
    )
    .expect("webhook")
    .id;
    let drops = take!(
        "add filtered webhook",
        store.add_webhook(NewWebhook {
            url: WebhookUrl::parse("http://127.0.0.1:9/drops").expect("url"),
            events: crate::webhook::parse_event_filters("dropped,needs_operator").expect("filters"),
            accounts: Some(vec![a]),
            secret_name: secret("webhook-drops"),
        })
    )
    .expect("webhook")
    .id;
    step!("webhooks", store.webhooks());

    // Transitions: batches that open, close and reopen sessions, with and without the state
    // they leave.
    let rec = |id, from, to: State, s: f64| TransitionRecord {
        account_id: id,
        from,
        to,
        detail: Some(format!("at {s} ✓")),
        triggered_by: TriggeredBy::Engine,
        at: at(s),
    };
    let drop = |s: f64| State::Backoff {
        attempt: 1,
        retry_at: at(s + 3.0),
        reason: Reason::ClosedByPeer { code: Some(1011) },
    };
    step!(
        "record",
        store.record_transitions(vec![
            rec(a, None, State::Connecting, 0.0),
            rec(a, None, State::Connected, 1.25),
            rec(b, None, State::Connecting, 2.0),
            rec(b, None, State::Connected, 2.5),
        ])
    );
    step!(
        "record batch",
        store.record_transitions(vec![
            rec(c, None, State::Connecting, 10.0),
            rec(b, Some(StateKind::Connected), drop(11.5), 11.5),
            rec(c, None, State::Waiting { reason: None }, 12.0),
            rec(a, Some(StateKind::Connected), drop(13.75), 13.75),
            rec(a, None, State::Connecting, 16.5),
            rec(a, None, State::Connected, 17.0),
            rec(
                b,
                None,
                State::Paused {
                    until: Some(at(60.0)),
                    reason: Reason::RateLimited
                },
                18.0
            ),
            rec(
                c,
                None,
                State::NeedsOperator {
                    reason: Reason::LoggedOut
                },
                19.5
            ),
        ])
    );
    step!("record empty", store.record_transitions(Vec::new()));
    step!("accounts after", store.accounts());
    step!("history", store.account_history(a, at(0.0)));
    step!("history later", store.account_history(b, at(12.0)));
    step!("intervals", async {
        store.connected_intervals(at(0.0)).await.map(sorted)
    });
    step!("failures", async {
        store.failures_since(at(0.0)).await.map(sorted)
    });
    let page = |account, since: Option<f64>, until: Option<f64>, after, limit| HistoryPage {
        account,
        range: TimeRange {
            since: since.map(at),
            until: until.map(at),
        },
        after,
        limit,
    };
    step!(
        "events",
        store.events_page(page(None, None, None, None, 1000))
    );
    step!(
        "events of a",
        store.events_page(page(Some(a), Some(1.0), Some(17.0), None, 1000))
    );
    step!(
        "events page 2",
        store.events_page(page(None, None, None, Some(3), 4))
    );
    step!(
        "events of unknown",
        store.events_page(page(Some(AccountId(99)), None, None, None, 10))
    );
    step!(
        "sessions",
        store.sessions_page(page(None, None, None, None, 100), at(30.0))
    );
    step!(
        "sessions of b",
        store.sessions_page(page(Some(b), Some(5.0), Some(12.0), None, 100), at(30.0))
    );

    // The outbox, written by the trigger and by hand.
    step!(
        "deliveries",
        store.deliveries(DeliveryFilter {
            endpoint: None,
            failed_only: false,
            limit: 100,
        })
    );
    step!(
        "filtered deliveries",
        store.deliveries(DeliveryFilter {
            endpoint: Some(drops),
            failed_only: false,
            limit: 100,
        })
    );
    step!(
        "alert",
        store.enqueue_webhook_message(
            "needs_operator",
            "account.alert",
            Some(a),
            &serde_json::json!({ "text": "Toko 🍜 needs you", "n": 2 }),
            at(20.0)
        )
    );
    step!(
        "summary",
        store.enqueue_webhook_message(
            "summary",
            "fleet.summary",
            None,
            &serde_json::json!({ "up": 2 }),
            at(21.0)
        )
    );
    let test = take!(
        "test message",
        store.enqueue_webhook_test(all, at(22.0), at(22.0))
    )
    .expect("test")
    .id;
    step!("delivery", store.delivery(test));
    step!("unknown delivery", store.delivery(9999));
    let busy = HashSet::from([DeliveryQueue {
        endpoint: all,
        account: Some(b),
    }]);
    let due = take!("due", store.due_deliveries(at(30.0), &busy, 3)).expect("due");
    step!(
        "next in queue",
        store.next_in_queue(
            DeliveryQueue {
                endpoint: all,
                account: None
            },
            at(30.0)
        )
    );
    step!("next at", store.next_delivery_at(at(0.0)));
    let mut attempts = Vec::new();
    for (i, d) in due.iter().enumerate() {
        let result = match i {
            0 => AttemptResult::Delivered { code: 204 },
            1 => AttemptResult::Retry {
                code: Some(503),
                error: "the endpoint answered 503".into(),
                retry_at: at(90.0),
            },
            _ => AttemptResult::Exhausted {
                code: None,
                error: "connection refused".into(),
            },
        };
        attempts.push(Attempt {
            delivery: d.id,
            result,
            at: at(31.0 + i as f64),
        });
    }
    step!("attempts", store.record_attempts(&attempts));
    step!(
        "attempt of unknown",
        store.record_attempt(9999, &AttemptResult::Delivered { code: 200 }, at(40.0))
    );
    step!(
        "failed deliveries",
        store.deliveries(DeliveryFilter {
            endpoint: None,
            failed_only: true,
            limit: 100,
        })
    );
    step!("stats", store.outbox_stats());
    step!(
        "rotate",
        store.rotate_webhook_secret(all, &secret("webhook-all-2"), at(3600.0))
    );
    step!(
        "rotate again",
        store.rotate_webhook_secret(all, &secret("webhook-all-3"), at(7200.0))
    );
    step!("end rotation", store.end_webhook_rotation(all));
    step!(
        "disable",
        store.set_webhook_enabled(drops, false, Some("paused by Sri"))
    );
    step!(
        "due while off",
        store.due_deliveries(at(30.0), &HashSet::new(), 100)
    );
    step!("enable", store.set_webhook_enabled(drops, true, None));
    step!(
        "gone",
        store.record_attempt(due[0].id, &AttemptResult::Gone { code: 410 }, at(50.0))
    );
    step!("webhook", store.webhook(all));
    step!("replay failed", store.replay_failed(Some(all)));
    step!("prune delivered", store.prune_delivered(at(10_000.0)));
    step!("stats after", store.outbox_stats());

    // The supervisor's own rows.
    let open = Breaker::Open {
        until: at(300.0),
        cooldown_s: 300,
    };
    step!("save breaker", store.save_breaker(a, &open, at(40.0)));
    step!(
        "save breaker again",
        store.save_breaker(c, &Breaker::HalfOpen { cooldown_s: 600 }, at(41.0))
    );
    step!("breaker", store.breaker(a));
    step!("breaker never saved", store.breaker(b));
    step!("breakers", async { store.breakers().await.map(sorted) });
    step!("no run", store.last_run());
    let run = take!("begin run", store.begin_run(at(0.0)))
        .expect("run")
        .id;
    step!("heartbeat", store.heartbeat(run, at(45.0)));
    step!("last heartbeat", store.last_heartbeat());
    step!("end run", store.end_run(run, at(46.0)));
    let second = take!("begin second run", store.begin_run(at(47.0)))
        .expect("run")
        .id;
    step!("previous last seen", store.previous_last_seen(second));
    step!("last run", store.last_run());

    // Settings and their log.
    step!("setting unset", store.setting("ui.theme"));
    step!("set setting", store.set_setting("ui.theme", "dark"));
    step!(
        "set setting again",
        store.set_setting("ui.theme", "light 🌙")
    );
    step!("setting", store.setting("ui.theme"));
    step!("autorecover", store.autorecover());
    step!("autorecover off", store.set_autorecover(false));
    step!("autorecover off again", store.set_autorecover(false));
    step!("autorecover now", store.autorecover());
    let mut policy = take!("policy", store.policy()).expect("policy");
    policy.backoff.base_ms *= 2;
    step!("set policy", store.set_policy(&policy));
    step!("set same policy", store.set_policy(&policy));
    step!("policy now", store.policy());
    step!("setting changes", async {
        store.setting_changes(10).await.map(|changes| {
            changes
                .into_iter()
                .map(|c| (c.id, c.key, c.old, c.new))
                .collect::<Vec<_>>()
        })
    });

    // Commands and link codes.
    step!("no command", store.last_command_id());
    let start = take!(
        "enqueue",
        store.enqueue(&Op::Act(Action::Start, Target::One(a)), at(50.0))
    )
    .expect("queued");
    step!(
        "enqueue link",
        store.enqueue(
            &Op::Link(
                b,
                LinkMode::PhoneCode {
                    phone: "+6281234567890".into()
                }
            ),
            at(51.0)
        )
    );
    step!(
        "enqueue all",
        store.enqueue(&Op::Act(Action::Retry, Target::All), at(52.0))
    );
    step!("last command", store.last_command_id());
    step!("commands", store.commands_after(0));
    step!("answer", store.answer_command(start, &CommandOutcome::Done));
    step!(
        "answer twice",
        store.answer_command(start, &CommandOutcome::Done)
    );
    step!(
        "answer failed",
        store.answer_command(
            start + 1,
            &CommandOutcome::Failed {
                message: "no such number".into(),
                input: true
            }
        )
    );
    step!("outcome", store.command_outcome(start));
    step!("outcome failed", store.command_outcome(start + 1));
    step!("outcome pending", store.command_outcome(start + 2));
    step!("commands left", store.commands_after(start));
    step!("prune commands", store.prune_commands(at(51.5)));
    step!("commands pruned", store.commands_after(0));
    let code = LinkCode {
        mode: LinkMode::PhoneCode {
            phone: "+6281234567890".into(),
        },
        code: "ABCD-EFGH".into(),
        expires_at: at(180.0),
    };
    step!("put link code", store.put_link_code(b, &code));
    step!("link code", async {
        store
            .link_code(b)
            .await
            .map(|c| c.map(|c| (c.mode, c.code, c.expires_at)))
    });
    step!("clear link code", store.clear_link_code(b));
    step!("link code gone", async {
        store.link_code(b).await.map(|c| c.is_some())
    });

    // A creator's lives.
    let live = |key: &str, start: f64, end: Option<f64>, viewers: i64| RemoteSession {
        key: key.into(),
        started_at: at(start),
        ended_at: end.map(at),
        end: end.map(|_| "ended".to_owned()),
        metrics: vec![
            ("peak_viewers".into(), viewers),
            ("likes".into(), viewers * 3),
        ],
    };
    step!(
        "save lives",
        store.save_remote_sessions(
            &[
                (c, live("room-1", 100.0, Some(200.0), 50)),
                (c, live("room-2", 300.0, None, 10))
            ],
            at(301.0)
        )
    );
    step!(
        "update lives",
        store.save_remote_sessions(
            &[
                (c, live("room-1", 100.0, None, 9999)),
                (c, live("room-2", 300.0, None, 80))
            ],
            at(302.0)
        )
    );
    step!("open lives", async {
        store.open_remote_sessions().await.map(sorted)
    });
    step!("lives", store.remote_sessions(c, 10));

    // Last: steps after which the databases number new rows differently.
    step!("remove webhook", store.remove_webhook(drops));
    step!("webhooks after", store.webhooks());
    step!(
        "duplicate name",
        store.add_account(NewAccount::new(AccountKind::Whatsapp, "Warung Bu Sri"))
    );
    step!(
        "duplicate rename",
        store.update_account(
            a,
            AccountChange {
                name: Some("Warung Bu Sri".into()),
                ..AccountChange::default()
            }
        )
    );
    step!("remove", store.mark_removed(c));
    step!("remove twice", store.mark_removed(c));
    step!(
        "record for removed",
        store.record_transitions(vec![rec(c, None, State::Connecting, 400.0)])
    );
    step!(
        "record for unknown",
        store.record_transitions(vec![rec(AccountId(99), None, State::Connecting, 400.0)])
    );
    step!("accounts at the end", store.accounts());
    step!("removed is known", store.known_account(Some(c)));
    step!(
        "events at the end",
        store.events_page(page(None, Some(300.0), None, None, 100))
    );
    t
}

/// Masks what differs by nature: times read from the clock while the scenario ran (they fall
/// around now, the scenario's own are in January) and the store's webhook-id prefix.
fn masked(t: Transcript, prefix: &str) -> Vec<String> {
    let now = Utc::now();
    let days: Vec<String> = [-1, 0, 1]
        .iter()
        .map(|d| (now + Duration::days(*d)).format("%Y-%m-%dT").to_string())
        .collect();
    t.0.into_iter()
        .map(|line| {
            let mut line = line.replace(prefix, "<prefix>");
            for day in &days {
                while let Some(start) = line.find(day.as_str()) {
                    let end = line[start..]
                        .find('Z')
                        .map_or(line.len(), |i| start + i + 1);
                    line.replace_range(start..end, "<now>");
                }
            }
            line
        })
        .collect()
}

async fn run(store: &Store) -> Vec<String> {
    let transcript = scenario(store).await;
    let prefix = store
        .setting("webhook.id_prefix")
        .await
        .expect("read")
        .expect("a webhook-id prefix");
    masked(transcript, &prefix)
}

#[tokio::test]
async fn the_fleet_store_answers_every_method_as_the_sqlite_store_does() {
    let Some(both) = Both::new("conformance").await else {
        return;
    };
    let (sqlite, postgres) = (&both.sqlite, &both.postgres);

    let expected = run(sqlite).await;
    let got = run(postgres).await;
    // The scenario reached the end and saw what it was meant to (not one refusal everywhere).
    assert!(expected.len() > 100, "{} steps", expected.len());
    let errors = expected.iter().filter(|l| l.contains(": Err(")).count();
    assert!(
        (10..=20).contains(&errors),
        "the scenario's refusals are the ones it asks for ({errors}):\n{}",
        expected.join("\n")
    );
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        if g != e {
            // Long lines: show where they part.
            let at = e
                .char_indices()
                .zip(g.chars())
                .find(|((_, a), b)| a != b)
                .map_or(e.len().min(g.len()), |((i, _), _)| i);
            let from = e.floor_char_boundary(at.saturating_sub(150));
            panic!(
                "step {i} differs:\n  SQLite:     …{}\n  PostgreSQL: …{}",
                &e[from..e.ceil_char_boundary((at + 150).min(e.len()))],
                &g[g.floor_char_boundary(from.min(g.len()))
                    ..g.ceil_char_boundary((at + 150).min(g.len()))],
            );
        }
    }
    assert_eq!(got.len(), expected.len());
    postgres.close().await;
    sqlite.close().await;
}

/// What the scenario leaves, read with SQL: the same rows in every table.
#[tokio::test]
async fn the_outbox_trigger_and_the_recorder_write_the_same_rows_on_both() {
    let Some(both) = Both::new("rows").await else {
        return;
    };
    let (fleet, sqlite, postgres) = (&both.fleet, &both.sqlite, &both.postgres);
    scenario(sqlite).await;
    scenario(postgres).await;
    const EVENTS: &str = "SELECT id, account_id, at, from_state, to_state, reason, state_json, \
                          detail, triggered_by FROM events ORDER BY id";
    type EventRow = (
        i64,
        i64,
        i64,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        String,
    );
    let pg: Vec<EventRow> = sqlx::query_as(EVENTS)
        .fetch_all(fleet.pool())
        .await
        .expect("events");
    let lite: Vec<EventRow> = sqlx::query_as(EVENTS)
        .fetch_all(sqlite.pool())
        .await
        .expect("events");
    assert_eq!(pg, lite);
    assert!(pg.len() >= 12, "{} events", pg.len());
    const SESSIONS: &str =
        "SELECT id, account_id, started_at, ended_at, end_reason FROM sessions ORDER BY id";
    type SessionRow = (i64, i64, i64, Option<i64>, Option<String>);
    let pg: Vec<SessionRow> = sqlx::query_as(SESSIONS)
        .fetch_all(fleet.pool())
        .await
        .expect("sessions");
    let lite: Vec<SessionRow> = sqlx::query_as(SESSIONS)
        .fetch_all(sqlite.pool())
        .await
        .expect("sessions");
    assert_eq!(pg, lite);
    const DELIVERIES: &str = "SELECT id, endpoint_id, account_id, event_id, type, data, at, \
                              status, attempts, next_at FROM webhook_deliveries ORDER BY id";
    type DeliveryRow = (
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        String,
        Option<String>,
        i64,
        String,
        i64,
        i64,
    );
    let pg: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES)
        .fetch_all(fleet.pool())
        .await
        .expect("deliveries");
    let lite: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES)
        .fetch_all(sqlite.pool())
        .await
        .expect("deliveries");
    // Replayed deliveries go out "now": compare the rest.
    let strip = |rows: Vec<DeliveryRow>| -> Vec<_> {
        rows.into_iter()
            .map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8))
            .collect()
    };
    let (pg, lite) = (strip(pg), strip(lite));
    assert_eq!(pg, lite);
    // The trigger wrote a message per transition for the endpoint that takes all, and only the
    // drops of account 1 for the filtered one.
    let by_trigger = lite.iter().filter(|r| r.3.is_some()).count();
    assert!(by_trigger >= 12, "{by_trigger} messages from the trigger");
    postgres.close().await;
    sqlite.close().await;
}

#[test]
fn masking_leaves_the_scenarios_own_times_and_hides_the_clocks() {
    let now = Utc::now();
    let line = format!("x: {:?} {:?} msg_abc1", at(1.5), now);
    let out = masked(Transcript(vec![line]), "abc");
    assert_eq!(
        out,
        [format!("x: {:?} <now> msg_<prefix>1", at(1.5))],
        "{now:?}"
    );
}

/// A fleet instance's writes are fenced: once another instance took the account's lease over,
/// every write of the old owner about it (a transition with its history and webhook messages,
/// a breaker, an identity, a remote session) is refused and nothing of it is written; the new
/// owner writes as before. An account this instance never held is refused the same way.
#[tokio::test]
async fn a_fenced_store_refuses_writes_for_accounts_whose_lease_moved() {
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    let Some((_cluster, fleet)) = fleet_store("fence").await else {
        return;
    };
    let plain = Store::fleet(&fleet);
    let a_id = plain
        .add_account(NewAccount::new(AccountKind::Whatsapp, "Toko A"))
        .await
        .expect("account")
        .id;
    let b_id = plain
        .add_account(NewAccount::new(AccountKind::Whatsapp, "Toko B"))
        .await
        .expect("account")
        .id;
    let ttl = StdDuration::from_secs(15);
    let first = fleet.register(None).await.expect("register");
    let lease = first
        .acquire(a_id.0, ttl)
        .await
        .expect("acquire")
        .expect("free")
        .lease;
    let fence = Arc::new(super::Fence::new(first.clone()));
    fence.hold(lease);
    let old = plain.fenced(fence.clone());
    let rec = |id, to: State, s: f64| TransitionRecord {
        account_id: id,
        from: None,
        to,
        detail: None,
        triggered_by: TriggeredBy::Engine,
        at: at(s),
    };
    old.record_transitions(vec![
        rec(a_id, State::Connecting, 0.0),
        rec(a_id, State::Connected, 1.0),
    ])
    .await
    .expect("the owner writes");
    let stale = |r: crate::error::Result<()>| {
        assert!(
            matches!(
                r,
                Err(crate::Error::Fleet(lifeline_fleet::Error::Stale { .. }))
            ),
            "{r:?}"
        );
    };
    // Never held here: refused.
    stale(
        old.record_transitions(vec![rec(b_id, State::Connecting, 2.0)])
            .await
            .map(drop),
    );

    // 16 s later on the database's clock the lease has expired and another instance takes it.
    let later = fleet.with_clock_offset(16.0);
    let second = later.register(None).await.expect("register");
    let claimed = second.claim(10, ttl).await.expect("claim");
    assert!(
        claimed
            .iter()
            .any(|c| c.lease.account == a_id.0 && c.takeover)
    );

    let events = || async {
        plain
            .events_page(HistoryPage {
                account: None,
                range: TimeRange::default(),
                after: None,
                limit: 100,
            })
            .await
            .expect("events")
            .len()
    };
    let deliveries = plain.outbox_stats().await.expect("stats");
    let written = events().await;
    stale(
        old.record_transitions(vec![rec(a_id, State::Connecting, 3.0)])
            .await
            .map(drop),
    );
    stale(
        old.save_breaker(a_id, &Breaker::HalfOpen { cooldown_s: 60 }, at(3.0))
            .await,
    );
    stale(
        old.set_identity(
            a_id,
            &Identity {
                id: "+6281111111".into(),
                name: None,
            },
        )
        .await,
    );
    stale(
        old.save_remote_sessions(
            &[(
                a_id,
                RemoteSession {
                    key: "room".into(),
                    started_at: at(3.0),
                    ended_at: None,
                    end: None,
                    metrics: Vec::new(),
                },
            )],
            at(3.0),
        )
        .await,
    );
    assert_eq!(events().await, written, "nothing of the stale writes");
    assert_eq!(
        plain.breaker(a_id).await.expect("breaker"),
        Breaker::default()
    );
    assert_eq!(plain.account(a_id).await.expect("account").identity, None);
    assert!(
        plain
            .open_remote_sessions()
            .await
            .expect("sessions")
            .is_empty()
    );
    assert_eq!(plain.outbox_stats().await.expect("stats"), deliveries);
    assert_eq!(
        plain.account(a_id).await.expect("account").state,
        State::Connected
    );
    // Counted: the first refusal (never held) and the four after the takeover.
    first.heartbeat().await.expect("heartbeat");
    let rows = fleet.instances(ttl).await.expect("instances");
    let row = rows
        .iter()
        .find(|i| i.id == first.id().as_str())
        .expect("the first instance");
    assert_eq!(row.stale_writes_refused, 5);

    // The new owner's fence lets its writes through.
    let new_fence = Arc::new(super::Fence::new(second.clone()));
    for c in &claimed {
        new_fence.hold(c.lease);
    }
    // Its store reads the database's clock as the new owner does (16 s on).
    let new = Store::fleet(&later).fenced(new_fence);
    new.record_transitions(vec![rec(
        a_id,
        State::Stopped {
            reason: Some(Reason::Crashed),
        },
        4.0,
    )])
    .await
    .expect("the new owner writes");
    assert_eq!(events().await, written + 1);
}

/// On a fleet store each instance's webhook sender reads only the messages about the accounts
/// it holds, and the oldest live instance also those about no one account: every message has
/// exactly one sender among the instances.
#[tokio::test]
async fn fleet_instances_split_the_outbox_by_lease() {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    let Some((_cluster, fleet)) = fleet_store("outbox").await else {
        return;
    };
    let plain = Store::fleet(&fleet);
    let add = |name: &'static str| {
        let plain = plain.clone();
        async move {
            plain
                .add_account(NewAccount::new(AccountKind::Whatsapp, name))
                .await
                .expect("account")
                .id
        }
    };
    let (one, two) = (add("Toko 1").await, add("Toko 2").await);
    plain
        .add_webhook(NewWebhook {
            url: WebhookUrl::parse("http://127.0.0.1:9/all").expect("url"),
            events: None,
            accounts: None,
            secret_name: secret("webhook-all"),
        })
        .await
        .expect("webhook");
    let ttl = StdDuration::from_secs(15);
    let mut stores = Vec::new();
    for account in [one, two] {
        let instance = fleet.register(None).await.expect("register");
        let lease = instance
            .acquire(account.0, ttl)
            .await
            .expect("acquire")
            .expect("free")
            .lease;
        let fence = Arc::new(super::Fence::new(instance));
        fence.hold(lease);
        let store = plain.fenced(fence);
        store
            .record_transitions(vec![TransitionRecord {
                account_id: account,
                from: None,
                to: State::Connecting,
                detail: None,
                triggered_by: TriggeredBy::Engine,
                at: at(1.0),
            }])
            .await
            .expect("recorded by its holder");
        stores.push(store);
    }
    plain
        .enqueue_webhook_message(
            "summary",
            "fleet.summary",
            None,
            &serde_json::json!({ "up": 0 }),
            at(2.0),
        )
        .await
        .expect("queued");
    let heads = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .due_deliveries(at(100.0), &HashSet::new(), 100)
                .await
                .expect("due")
                .into_iter()
                .map(|d| d.account_id)
                .collect::<Vec<_>>()
        }
    };
    // The first instance registered is the oldest: it also sends what is about no account.
    let mut first = heads(&stores[0]).await;
    first.sort();
    assert_eq!(first, [None, Some(one)]);
    assert_eq!(heads(&stores[1]).await, [Some(two)]);
    // Without a fence (an admin command, a single machine) every queue is there.
    let mut all = heads(&plain).await;
    all.sort();
    assert_eq!(all, [None, Some(one), Some(two)]);
}

/// CSV exports read the same rows from either store and write the same bytes: every kind, with
/// and without an account and a range.
#[tokio::test]
async fn csv_exports_from_both_stores_are_the_same() {
    use crate::export::{ExportFilter, ExportKind, export_csv_at};
    let Some(both) = Both::new("exports").await else {
        return;
    };
    let (sqlite, postgres) = (&both.sqlite, &both.postgres);
    scenario(sqlite).await;
    scenario(postgres).await;
    // Open sessions count to this time on both.
    let now = crate::time::to_ms(at(400.0));
    let filters = [
        ExportFilter::default(),
        ExportFilter {
            account: Some(AccountId(1)),
            range: TimeRange::default(),
        },
        ExportFilter {
            account: None,
            range: TimeRange {
                since: Some(at(20.0)),
                until: Some(at(150.0)),
            },
        },
    ];
    for kind in [ExportKind::Sessions, ExportKind::Events, ExportKind::Lives] {
        for filter in filters {
            let export = |store: &Store| {
                let store = store.clone();
                async move {
                    let (rows, out) = export_csv_at(&store, kind, filter, now, Vec::new(), |_| {})
                        .await
                        .expect("export");
                    (rows, String::from_utf8(out).expect("utf-8"))
                }
            };
            let (lite_rows, lite) = export(sqlite).await;
            let (pg_rows, pg) = export(postgres).await;
            assert_eq!(pg, lite, "{kind:?} {filter:?}");
            assert_eq!(pg_rows, lite_rows);
            if filter == ExportFilter::default() {
                assert!(lite_rows >= 2, "{kind:?}: {lite_rows} rows\n{lite}");
            }
        }
    }
    postgres.close().await;
    sqlite.close().await;
}

/// A connector whose every WhatsApp account has a device store: its snapshot names the account.
#[derive(Debug)]
struct Devices;

impl crate::connector::Connector for Devices {
    fn run(
        &self,
        _: crate::connector::ConnectRequest,
        _: tokio::sync::mpsc::Sender<crate::connector::ConnEvent>,
        _: tokio_util::sync::CancellationToken,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }

    fn snapshot(&self, account: &crate::model::Account) -> crate::Result<Option<Vec<u8>>> {
        Ok(Some(format!("device store of {}", account.id).into_bytes()))
    }
}

/// A machine's store moves into an empty fleet store whole: the fleet answers as the machine
/// did (accounts, history, exports, webhooks, settings), goes on numbering after the copied
/// ids, holds a free lease per account and each number's device store sealed. A failure half
/// way leaves the fleet store empty; a second migration into it is refused.
#[tokio::test]
async fn a_machines_store_moves_into_a_fleet_store_whole_or_not_at_all() {
    use crate::connector::Connectors;
    use crate::export::{ExportFilter, ExportKind, export_csv_at};
    use crate::store::migrate::{Progress, migrate_to_fleet};
    let Some(both) = Both::new("migrate").await else {
        return;
    };
    let (fleet, sqlite, postgres) = (&both.fleet, &both.sqlite, &both.postgres);
    scenario(sqlite).await;
    let connectors = Connectors::new().with(AccountKind::Whatsapp, std::sync::Arc::new(Devices));
    let key = lifeline_fleet::FleetKey::generate().expect("key");
    let whatsapp: Vec<AccountId> = sqlite
        .accounts()
        .await
        .expect("accounts")
        .iter()
        .filter(|a| a.kind == AccountKind::Whatsapp)
        .map(|a| a.id)
        .collect();
    assert!(!whatsapp.is_empty());
    let empty = |postgres: Store| async move {
        postgres.accounts().await.expect("accounts").is_empty()
            && postgres.outbox_stats().await.expect("outbox").pending == 0
    };

    // Linked numbers and no fleet key: refused before anything is written.
    let e = migrate_to_fleet(sqlite, fleet, &connectors, None, |_| {})
        .await
        .expect_err("no key");
    assert!(e.is_input() && e.to_string().contains("fleet key"), "{e}");
    assert!(empty(postgres.clone()).await);

    // A row PostgreSQL cannot hold (text with a NUL byte), met late in the copy: nothing stays.
    let pool = sqlite.pool();
    sqlx::query("UPDATE webhook_deliveries SET type = 'account.' || char(0) WHERE id = (SELECT max(id) FROM webhook_deliveries)")
        .execute(pool)
        .await
        .expect("damage");
    let e = migrate_to_fleet(sqlite, fleet, &connectors, Some(&key), |_| {})
        .await
        .expect_err("a row PostgreSQL refuses");
    assert!(!e.to_string().is_empty());
    assert!(
        empty(postgres.clone()).await,
        "a failed copy left rows behind"
    );
    // The outbox trigger, switched off for a copy, is on again whatever happened.
    let trigger_on = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT tgenabled::TEXT FROM pg_trigger WHERE tgname = 'events_outbox'",
        )
        .fetch_one(fleet.pool())
        .await
        .expect("trigger")
            == "O"
    };
    assert!(trigger_on().await);
    sqlx::query(
        "UPDATE webhook_deliveries SET type = 'account.dropped' WHERE type = 'account.' || char(0)",
    )
    .execute(pool)
    .await
    .expect("repair");

    let mut seen = Vec::new();
    let migrated = migrate_to_fleet(sqlite, fleet, &connectors, Some(&key), |p| seen.push(p))
        .await
        .expect("migrate");
    assert_eq!(migrated.device_stores, whatsapp.len() as u64);
    assert!(trigger_on().await);
    for (table, rows) in &migrated.tables {
        assert!(
            seen.contains(&Progress::Rows { table, rows: *rows }),
            "{table}"
        );
    }
    let rows = |name: &str| {
        migrated
            .tables
            .iter()
            .find(|(t, _)| *t == name)
            .map(|(_, n)| *n)
            .expect(name)
    };
    assert!(
        rows("events") >= 12 && rows("webhook_deliveries") >= 12,
        "{migrated:?}"
    );

    // The fleet answers as the machine did.
    assert_eq!(
        format!("{:?}", postgres.accounts().await.expect("accounts")),
        format!("{:?}", sqlite.accounts().await.expect("accounts"))
    );
    assert_eq!(
        format!("{:?}", postgres.webhooks().await.expect("webhooks")),
        format!("{:?}", sqlite.webhooks().await.expect("webhooks"))
    );
    assert_eq!(
        postgres.setting("webhook.id_prefix").await.expect("prefix"),
        sqlite.setting("webhook.id_prefix").await.expect("prefix")
    );
    assert_eq!(
        postgres.outbox_stats().await.expect("outbox"),
        sqlite.outbox_stats().await.expect("outbox")
    );
    let now = crate::time::to_ms(at(400.0));
    for kind in [ExportKind::Sessions, ExportKind::Events, ExportKind::Lives] {
        let mut csv = Vec::new();
        for store in [&sqlite, &postgres] {
            let (_, out) = export_csv_at(
                store,
                kind,
                ExportFilter::default(),
                now,
                Vec::new(),
                |_| {},
            )
            .await
            .expect("export");
            csv.push(out);
        }
        assert_eq!(csv[0], csv[1], "{kind:?}");
    }
    // Each number's device store, sealed, opens with the key; every account has a free lease.
    for id in &whatsapp {
        let plain = fleet
            .device_store(id.0, &key)
            .await
            .expect("device store")
            .expect("stored");
        assert_eq!(plain, format!("device store of {id}").into_bytes());
    }
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM account_leases WHERE owner IS NULL")
        .fetch_one(fleet.pool())
        .await
        .expect("leases");
    assert_eq!(
        leases as usize,
        sqlite.accounts().await.expect("accounts").len()
    );
    // Ids go on after the copied ones.
    let highest = sqlx::query_scalar::<_, i64>("SELECT max(id) FROM accounts")
        .fetch_one(pool)
        .await
        .expect("max id");
    let next = postgres
        .add_account(NewAccount::new(AccountKind::Whatsapp, "after the move"))
        .await
        .expect("add");
    assert_eq!(next.id, AccountId(highest + 1));

    // Into a fleet store that holds accounts: refused, nothing changed.
    let before = postgres.accounts().await.expect("accounts").len();
    let e = migrate_to_fleet(sqlite, fleet, &connectors, Some(&key), |_| {})
        .await
        .expect_err("not empty");
    assert!(e.is_input() && e.to_string().contains("empty"), "{e}");
    assert_eq!(postgres.accounts().await.expect("accounts").len(), before);
    postgres.close().await;
    sqlite.close().await;
}
