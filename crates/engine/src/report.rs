//! Health report of the fleet, shared by `lifeline health`, HTTP `/health` and the desktop app:
//! counts by state, per-account uptime (24 h) and score, breaker states.

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;
use serde::Serialize;

use crate::error::Result;
use crate::model::{AccountId, AccountKind};
use crate::policy::breaker::Breaker;
use crate::policy::health;
use crate::state::{State, StateKind};
use crate::store::Store;
use crate::supervisor::AccountView;
use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize)]
pub struct AccountHealth {
    pub id: AccountId,
    pub name: String,
    pub kind: AccountKind,
    pub desired_running: bool,
    pub state: State,
    pub since: Timestamp,
    /// Connected share of the last 24 hours, in percent.
    pub uptime_24h_pct: f64,
    pub score: u8,
    pub breaker: &'static str,
    pub failures_1h: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetHealth {
    pub at: Timestamp,
    /// True when every desired-running account is connected.
    pub healthy: bool,
    pub accounts_total: usize,
    pub desired_running: usize,
    pub desired_connected: usize,
    pub by_state: BTreeMap<&'static str, usize>,
    pub breakers_open: usize,
    /// Mean score of desired-running accounts (100 when there are none).
    pub fleet_score: u8,
    pub fleet_uptime_24h_pct: f64,
    pub accounts: Vec<AccountHealth>,
}

/// Builds the report at `now`. With `live` views (inside a running supervisor) states are the
/// in-memory ones; otherwise the last recorded states are used.
pub async fn fleet_health(
    store: &Store,
    now: Timestamp,
    live: Option<&[AccountView]>,
) -> Result<FleetHealth> {
    let accounts = store.accounts().await?;
    let window_start = now - Duration::hours(24);
    let intervals = store.connected_intervals(window_start).await?;
    let failures = store.failures_since(now - Duration::hours(1)).await?;
    let breakers = store.breakers().await?;
    let live: HashMap<AccountId, &AccountView> =
        live.unwrap_or_default().iter().map(|v| (v.id, v)).collect();
    let mut by_state: BTreeMap<&'static str, usize> =
        StateKind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    let mut out = Vec::with_capacity(accounts.len());
    for a in accounts {
        let (state, since, desired) = match live.get(&a.id) {
            Some(v) => (v.state.clone(), v.since, v.desired_running),
            None => (a.state.clone(), a.state_since, a.desired_running),
        };
        let breaker = breakers.get(&a.id).cloned().unwrap_or_default();
        let uptime = health::uptime_ratio(
            intervals.get(&a.id).map(Vec::as_slice).unwrap_or_default(),
            window_start.max(a.created_at),
            now,
        );
        let fails = failures.get(&a.id).copied().unwrap_or(0);
        let score = health::score(uptime, fails, breaker.is_open(), state.kind());
        *by_state.entry(state.kind().as_str()).or_default() += 1;
        out.push(AccountHealth {
            id: a.id,
            name: a.name,
            kind: a.kind,
            desired_running: desired,
            state,
            since,
            uptime_24h_pct: (uptime * 1000.0).round() / 10.0,
            score,
            breaker: breaker_label(&breaker),
            failures_1h: fails,
        });
    }
    let desired: Vec<&AccountHealth> = out.iter().filter(|a| a.desired_running).collect();
    let desired_connected = desired
        .iter()
        .filter(|a| a.state == State::Connected)
        .count();
    let fleet_score = if desired.is_empty() {
        100
    } else {
        (desired.iter().map(|a| f64::from(a.score)).sum::<f64>() / desired.len() as f64).round()
            as u8
    };
    let fleet_uptime = if desired.is_empty() {
        100.0
    } else {
        desired.iter().map(|a| a.uptime_24h_pct).sum::<f64>() / desired.len() as f64
    };
    Ok(FleetHealth {
        at: now,
        healthy: desired_connected == desired.len(),
        accounts_total: out.len(),
        desired_running: desired.len(),
        desired_connected,
        by_state,
        breakers_open: out.iter().filter(|a| a.breaker == "open").count(),
        fleet_score,
        fleet_uptime_24h_pct: (fleet_uptime * 10.0).round() / 10.0,
        accounts: out,
    })
}

fn breaker_label(b: &Breaker) -> &'static str {
    b.label()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::NewAccount;
    use crate::state::TriggeredBy;
    use crate::store::tests::temp_store;

    #[tokio::test]
    async fn report_counts_states_and_flags_unhealthy_fleets() {
        let (_tmp, store) = temp_store().await;
        for name in ["a", "b", "c"] {
            store
                .add_account(NewAccount::new(AccountKind::Websocket, name).with_url("ws://h/"))
                .await
                .expect("add");
        }
        store
            .set_desired_running(AccountId(3), false)
            .await
            .expect("desired");
        let now = Utc::now();
        store
            .record_transition(
                AccountId(1),
                State::Connected,
                None,
                TriggeredBy::Engine,
                now - Duration::hours(6),
            )
            .await
            .expect("t");
        let r = fleet_health(&store, now, None).await.expect("report");
        assert!(!r.healthy, "b is desired but not connected");
        assert_eq!(r.desired_running, 2);
        assert_eq!(r.desired_connected, 1);
        assert_eq!(r.by_state["connected"], 1);
        assert_eq!(r.by_state["stopped"], 2);
        let a = &r.accounts[0];
        assert_eq!(a.name, "a");
        // Created just now, connected for the whole (clipped) window → 100 %.
        assert!(a.uptime_24h_pct > 99.0, "{}", a.uptime_24h_pct);
        assert_eq!(a.score, 100);
        store
            .record_transition(
                AccountId(2),
                State::Connected,
                None,
                TriggeredBy::Engine,
                now,
            )
            .await
            .expect("t");
        assert!(
            fleet_health(&store, now, None)
                .await
                .expect("report")
                .healthy
        );
    }
}
