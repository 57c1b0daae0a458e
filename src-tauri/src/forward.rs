//! Carries the supervisor's updates to the window, the tray and the desktop's notifications.
//! Transitions are coalesced: changed accounts are collected and sent as one fleet delta (on the
//! window's `watch_fleet` channel) per [`FLUSH_EVERY`], so a 1000-account mass drop costs the UI a few messages, not
//! thousands, none of more than [`MAX_CARDS_PER_DELTA`] cards. Alerts follow the engine's decisions (grace period, summaries, mute) as they are;
//! the UI words them and asks for the desktop notification.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::AccountId;
use lifeline_engine::supervisor::Update;
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::error::RecvError;

use crate::api::{self, AlertInfo, Card, FleetDelta, NotificationText, SettingsChanged};
use crate::names;
use crate::shell::{Live, Shell};
use crate::tray::Tray;
use lifeline_engine::fleet::Counts;

/// Longest a transition waits before the UI hears of it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most cards one delta carries. A mass drop of 1000 accounts reaches the window as four deltas
/// on four flushes (the rest waits for the next flush), so no single frame takes in all 1000.
pub const MAX_CARDS_PER_DELTA: usize = 250;
/// Uptime and score are recomputed this often when nothing happens (they move slowly)…
pub const HEALTH_EVERY: Duration = Duration::from_secs(15);
/// …and at most this often while transitions keep arriving.
pub const HEALTH_AFTER_CHANGE: Duration = Duration::from_secs(2);

pub async fn run(app: AppHandle, shell: Arc<Shell>, live: Live) {
    let stop = live.sup.stopping();
    let mut updates = live.sup.subscribe();
    let mut pending: HashSet<AccountId> = HashSet::new();
    let mut sent = Sent {
        known: live.sup.views().iter().map(|v| v.id).collect(),
        cards: HashMap::new(),
    };
    let mut last_health = tokio::time::Instant::now();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut autorecover = live.store.autorecover().await.ok();
    let mut webhook_notices = shell.take_webhook_notices();
    update_tray(&app, &live);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(notice) = async { webhook_notices.as_mut()?.recv().await }, if webhook_notices.is_some() => {
                let lifeline_runtime::WebhookNotice::Disabled { endpoint, url, reason } = notice;
                tracing::warn!(endpoint, "webhook endpoint turned off: {reason}");
                let _ = app.emit(names::EVENT_WEBHOOK_OFF, api::WebhookOff { endpoint, url, reason });
            }
            u = updates.recv() => match u {
                Ok(Update::Transitions(events)) => pending.extend(events.iter().map(|e| e.account_id)),
                Ok(Update::Identity { account }) => { pending.insert(account); }
                Ok(Update::Alerts(alerts)) => {
                    for a in &alerts {
                        let info = AlertInfo::from(a);
                        tracing::info!(kind = ?info.kind, account = ?info.account, "alert");
                        let _ = app.emit(names::EVENT_ALERT, info);
                    }
                }
                Ok(Update::Link { account, code }) => match api::link_info(account.0, &code) {
                    // The code itself is never logged.
                    Ok(info) => { let _ = app.emit(names::EVENT_LINK, info); }
                    Err(e) => tracing::warn!(account = account.0, error = %e, "link code not drawable"),
                },
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "updates lagged; resending every card");
                    pending.extend(live.sup.views().iter().map(|v| v.id));
                }
                Err(RecvError::Closed) => return,
            },
            _ = flush.tick(), if !pending.is_empty() => {
                let ids = std::mem::take(&mut pending);
                let all = last_health.elapsed() >= HEALTH_AFTER_CHANGE;
                if all {
                    last_health = tokio::time::Instant::now();
                    if let Err(e) = shell.refresh_health(&live).await {
                        tracing::warn!(error = %e, "health pass failed");
                    }
                }
                pending.extend(emit_delta(&shell, &live, (!all).then_some(&ids), &mut sent).await);
                update_tray(&app, &live);
            }
            _ = health.tick() => {
                last_health = tokio::time::Instant::now();
                if let Err(e) = shell.refresh_health(&live).await {
                    tracing::warn!(error = %e, "health pass failed");
                    continue;
                }
                pending.extend(emit_delta(&shell, &live, None, &mut sent).await);
                update_tray(&app, &live);
                let now = live.store.autorecover().await.ok();
                if now.is_some() && now != autorecover {
                    autorecover = now;
                    if let Some(on) = now {
                        let _ = app.emit(names::EVENT_SETTINGS, SettingsChanged { autorecover: on });
                    }
                }
            }
        }
    }
}

/// What the window has been sent, so only real changes travel.
struct Sent {
    known: HashSet<AccountId>,
    cards: HashMap<i64, Card>,
}

/// Sends the cards of `ids` (or of every account) that differ from what was last sent, at most
/// [`MAX_CARDS_PER_DELTA`] of them, and the ids that disappeared. Returns the accounts whose
/// changed cards did not fit, for the next flush.
async fn emit_delta(
    shell: &Shell,
    live: &Live,
    ids: Option<&HashSet<AccountId>>,
    sent: &mut Sent,
) -> Vec<AccountId> {
    let (seq, views) = shell.read_views(live);
    let now: HashSet<AccountId> = views.iter().map(|v| v.id).collect();
    let removed: Vec<i64> = sent.known.difference(&now).map(|id| id.0).collect();
    for id in &removed {
        shell.forget(AccountId(*id));
        sent.cards.remove(id);
    }
    let changed = views
        .iter()
        .filter(|v| ids.is_none_or(|ids| ids.contains(&v.id) || !sent.known.contains(&v.id)));
    let mut cards: Vec<Card> = shell
        .cards(changed)
        .into_iter()
        .filter(|c| sent.cards.get(&c.id) != Some(c))
        .collect();
    let later = cards
        .split_off(cards.len().min(MAX_CARDS_PER_DELTA))
        .into_iter()
        .map(|c| AccountId(c.id))
        .collect();
    for c in &cards {
        sent.cards.insert(c.id, c.clone());
    }
    sent.known = now;
    if !cards.is_empty() || !removed.is_empty() {
        shell.send_fleet(FleetDelta {
            seq,
            cards,
            removed,
        });
    }
    later
}

fn update_tray(app: &AppHandle, live: &Live) {
    if let Some(tray) = app.try_state::<Tray>() {
        let views = live.sup.views();
        tray.update(&Counts::of(&views));
    }
}

/// A desktop notification (freedesktop D-Bus on Linux). Shown off the async runtime: the call
/// waits for the notification daemon.
pub fn notify(text: NotificationText) {
    let NotificationText { title, body } = text;
    tokio::task::spawn_blocking(move || {
        let shown = notify_rust::Notification::new()
            .appname("Lifeline")
            .summary(&title)
            .body(&body)
            .show();
        if let Err(e) = shown {
            tracing::warn!(error = %e, "desktop notification not shown");
        }
    });
}
