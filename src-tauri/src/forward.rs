//! Carries the supervisor's updates to the window, the tray and the desktop's notifications.
//! Transitions are coalesced: changed accounts are collected and sent as one fleet delta (on the
//! window's `watch_fleet` channel) per [`FLUSH_EVERY`], so a 1000-account mass drop costs the UI a few messages, not
//! thousands, none of more than [`MAX_CARDS_PER_DELTA`] cards. Alerts follow the engine's decisions (grace period, summaries, mute) as they are;
//! the UI words them and asks for the desktop notification. On a fleet's console the same
//! deltas, link codes and alerts come from reading the fleet store instead (`console`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::AccountId;
use lifeline_engine::supervisor::{AccountView, Supervisor, Update};
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::error::RecvError;

use crate::api::{self, AlertInfo, Card, FleetDelta, NotificationText, SettingsChanged};
use crate::shell::{Live, Shell};
use crate::tray::Tray;
use crate::{console, names};
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

/// Carries what happens to the window until `live` stops being what it works on.
pub async fn run(app: AppHandle, shell: Arc<Shell>, live: Arc<Live>) {
    match live.supervisor() {
        Some(sup) => supervised(app, shell, sup.clone(), &live).await,
        None => console(app, shell, &live).await,
    }
}

/// This computer supervises: the supervisor's updates, as they come.
async fn supervised(app: AppHandle, shell: Arc<Shell>, sup: Supervisor, live: &Live) {
    let stop = sup.stopping();
    let mut updates = sup.subscribe();
    let mut pending: HashSet<AccountId> = HashSet::new();
    let mut sent = Sent::new(live);
    let mut last_health = tokio::time::Instant::now();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut autorecover = live.store.autorecover().await.ok();
    let mut webhook_notices = shell.take_webhook_notices();
    update_tray(&app, live);
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
                Ok(Update::Alerts(alerts)) => emit_alerts(&app, &alerts),
                Ok(Update::Link { account, code }) => match api::link_info(account.0, &code) {
                    // The code itself is never logged.
                    Ok(info) => { let _ = app.emit(names::EVENT_LINK, info); }
                    Err(e) => tracing::warn!(account = account.0, error = %e, "link code not drawable"),
                },
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "updates lagged; resending every card");
                    pending.extend(sup.views().iter().map(|v| v.id));
                }
                Err(RecvError::Closed) => return,
            },
            _ = flush.tick(), if !pending.is_empty() => {
                let ids = std::mem::take(&mut pending);
                let all = last_health.elapsed() >= HEALTH_AFTER_CHANGE;
                if all {
                    last_health = tokio::time::Instant::now();
                    if let Err(e) = shell.refresh_health(live).await {
                        tracing::warn!(error = %e, "health pass failed");
                    }
                }
                pending.extend(emit_delta(&shell, live, (!all).then_some(&ids), &mut sent).await);
                update_tray(&app, live);
            }
            _ = health.tick() => {
                last_health = tokio::time::Instant::now();
                if let Err(e) = shell.refresh_health(live).await {
                    tracing::warn!(error = %e, "health pass failed");
                    continue;
                }
                pending.extend(emit_delta(&shell, live, None, &mut sent).await);
                update_tray(&app, live);
                autorecover_changed(&app, live, &mut autorecover).await;
            }
        }
    }
}

/// A fleet's console: the store read every [`console::POLL_EVERY`], the cards that changed
/// sent, and the link codes the holding instances keep there shown.
async fn console(app: AppHandle, shell: Arc<Shell>, live: &Live) {
    let Some(console) = live.console() else {
        return;
    };
    let stop = console.stopping();
    let mut sent = Sent::new(live);
    let mut codes: HashMap<AccountId, String> = HashMap::new();
    let mut poll = tokio::time::interval(console::POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut autorecover = live.store.autorecover().await.ok();
    let mut alerts: Option<console::Alerts> = None;
    let mut unreachable = false;
    loop {
        let all = tokio::select! {
            _ = stop.cancelled() => return,
            _ = poll.tick() => false,
            _ = health.tick() => true,
        };
        if let Err(e) = console.refresh(&live.store).await {
            // Kept quiet after the first: the cards stay as last read until it answers.
            if !unreachable {
                tracing::warn!(error = %e, "fleet store not readable");
            }
            unreachable = true;
            continue;
        }
        unreachable = false;
        // This reading, for the alerts and the link codes alike.
        let views = console.views();
        if all && let Err(e) = shell.refresh_health(live).await {
            tracing::warn!(error = %e, "health pass failed");
        }
        if alerts.is_none() {
            alerts = console::Alerts::start(&live.store).await.ok();
        }
        if let Some(alerts) = alerts.as_mut() {
            if all && let Err(e) = alerts.configure(&live.store).await {
                tracing::warn!(error = %e, "alert values not readable");
            }
            match alerts.read(&live.store, &views).await {
                Ok(due) => emit_alerts(&app, &due),
                Err(e) => tracing::warn!(error = %e, "fleet events not readable"),
            }
        }
        show_link_codes(&app, live, &views, &mut codes).await;
        // Every card is compared with what was sent: only changes travel.
        emit_delta(&shell, live, None, &mut sent).await;
        update_tray(&app, live);
        autorecover_changed(&app, live, &mut autorecover).await;
    }
}

/// Alerts to the window, which words them and asks for the desktop notification.
fn emit_alerts(app: &AppHandle, alerts: &[lifeline_engine::policy::alerts::Alert]) {
    for a in alerts {
        let info = AlertInfo::from(a);
        tracing::info!(kind = ?info.kind, account = ?info.account, "alert");
        let _ = app.emit(names::EVENT_ALERT, info);
    }
}

/// The codes of accounts being linked, each sent once (the codes themselves are never logged).
async fn show_link_codes(
    app: &AppHandle,
    live: &Live,
    views: &[AccountView],
    shown: &mut HashMap<AccountId, String>,
) {
    let linking: Vec<AccountId> = views
        .iter()
        .filter(|v| v.state.kind() == lifeline_engine::StateKind::Linking)
        .map(|v| v.id)
        .collect();
    shown.retain(|id, _| linking.contains(id));
    for id in linking {
        let code = match live.store.link_code(id).await {
            Ok(Some(code)) => code,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(account = id.0, error = %e, "link code not readable");
                continue;
            }
        };
        if shown.get(&id) == Some(&code.code) {
            continue;
        }
        match api::link_info(id.0, &code) {
            Ok(info) => {
                let _ = app.emit(names::EVENT_LINK, info);
                shown.insert(id, code.code);
            }
            Err(e) => tracing::warn!(account = id.0, error = %e, "link code not drawable"),
        }
    }
}

/// Tells the window when autorecover was switched elsewhere (the CLI, another console).
async fn autorecover_changed(app: &AppHandle, live: &Live, last: &mut Option<bool>) {
    let now = live.store.autorecover().await.ok();
    if now.is_some() && now != *last {
        *last = now;
        if let Some(on) = now {
            let _ = app.emit(names::EVENT_SETTINGS, SettingsChanged { autorecover: on });
        }
    }
}

/// What the window has been sent, so only real changes travel.
struct Sent {
    known: HashSet<AccountId>,
    cards: HashMap<i64, Card>,
}

impl Sent {
    fn new(live: &Live) -> Self {
        Self {
            known: live.views().iter().map(|v| v.id).collect(),
            cards: HashMap::new(),
        }
    }
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
        .cards(live, changed)
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
        tray.update(&Counts::of(&live.views()));
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
