//! Health report of the fleet, shared by `lifeline health`, HTTP `/health` and the desktop app:
//! the verdict and counts of [`crate::fleet`], per-account uptime (24 h) and score, breakers.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::Serialize;

use crate::error::Result;
use crate::fleet::{AccountView, Counts};
use crate::model::{AccountId, AccountKind};
use crate::policy::health;
use crate::state::State;
use crate::store::Store;
use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccountHealth {
    pub id: AccountId,
    pub name: String,
    pub kind: AccountKind,
    pub desired_running: bool,
    pub state: State,
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    /// Connected share of the last 24 hours, in percent.
    pub uptime_24h_pct: f64,
    pub score: u8,
    pub breaker: &'static str,
    pub failures_1h: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FleetHealth {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// True when every desired-running account is connected (the verdict of [`Counts`]).
    pub healthy: bool,
    pub accounts_total: usize,
    pub desired_running: usize,
    pub desired_connected: usize,
    /// Accounts waiting for a person (a new scan, logged out, replaced, …).
    pub needs_operator: usize,
    pub by_state: BTreeMap<&'static str, usize>,
    pub breakers_open: usize,
    /// Mean score of desired-running accounts (100 when there are none).
    pub fleet_score: u8,
    pub fleet_uptime_24h_pct: f64,
    pub accounts: Vec<AccountHealth>,
    /// This instance's part in its fleet, when it runs as one instance of a fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetPart>,
    #[serde(skip)]
    pub counts: Counts,
}

/// An instance's part in its fleet (the accounts above are the ones it runs) and the fleet's
/// totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FleetPart {
    /// This instance's id in the fleet's registry.
    pub instance: String,
    /// Accounts whose lease this instance holds.
    pub leases_held: usize,
    /// Leases it took over from an instance that stopped renewing.
    pub takeovers: u64,
    /// Its lease renewals that did not get through.
    pub renew_failures: u64,
    /// Its writes refused because the account's lease had moved.
    pub stale_writes_refused: u64,
    /// The fleet's totals (absent when the store could not be read for them).
    pub totals: Option<FleetTotalsView>,
}

/// The fleet's totals: accounts, live instances, leases held, and the instances' counters summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FleetTotalsView {
    pub accounts: i64,
    pub live_instances: i64,
    pub leases_held: i64,
    pub takeovers: i64,
    pub renew_failures: i64,
    pub stale_writes_refused: i64,
}

/// How long a report waits for figures only the database has (the fleet's totals) before it
/// answers without them: monitoring stays prompt while a fleet store is unreachable.
pub const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An instance's part in its fleet and the fleet's totals, as `/health` and `/metrics` report
/// them (`None`: not an instance of a fleet).
pub async fn fleet_part(store: &Store) -> Option<FleetPart> {
    let fence = store.fence()?;
    let mine = fence.instance().counts();
    let totals = match store.fleet_store() {
        Some(fleet) => {
            match tokio::time::timeout(STORE_WAIT, fleet.totals(lifeline_fleet::DEFAULT_TTL))
                .await
                .unwrap_or_else(|_| {
                    Err(lifeline_fleet::Error::Unreachable {
                        target: fleet.url().target(),
                        detail: format!("no answer within {} s", STORE_WAIT.as_secs()),
                    })
                }) {
                Ok(t) => Some(FleetTotalsView {
                    accounts: t.accounts,
                    live_instances: t.live_instances,
                    leases_held: t.leases_held,
                    takeovers: t.takeovers,
                    renew_failures: t.renew_failures,
                    stale_writes_refused: t.stale_writes_refused,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "fleet totals not readable");
                    None
                }
            }
        }
        None => None,
    };
    Some(FleetPart {
        instance: fence.instance().id().as_str().to_owned(),
        leases_held: fence.accounts().len(),
        takeovers: mine.takeovers,
        renew_failures: mine.renew_failures,
        stale_writes_refused: mine.stale_writes_refused,
        totals,
    })
}

/// Builds the report at `now` for `views` (live ones inside a supervisor, recorded ones
/// elsewhere), in the canonical order.
pub async fn fleet_health(
    store: &Store,
    now: Timestamp,
    views: &[AccountView],
) -> Result<FleetHealth> {
    let window_start = now - Duration::hours(24);
    let intervals = store.connected_intervals(window_start).await?;
    let failures = store.failures_since(now - Duration::hours(1)).await?;
    let mut views: Vec<&AccountView> = views.iter().collect();
    views.sort_by_key(|v| crate::fleet::order(v.priority, v.id));
    let counts = Counts::of(views.iter().copied());
    let mut out = Vec::with_capacity(views.len());
    for v in views {
        let uptime = health::uptime_ratio(
            intervals.get(&v.id).map(Vec::as_slice).unwrap_or_default(),
            window_start.max(v.created_at),
            now,
        );
        let fails = failures.get(&v.id).copied().unwrap_or(0);
        let score = health::score(uptime, fails, v.breaker == "open", v.state.kind());
        out.push(AccountHealth {
            id: v.id,
            name: v.name.clone(),
            kind: v.kind,
            desired_running: v.desired_running,
            state: v.state.clone(),
            since: v.since,
            uptime_24h_pct: (uptime * 1000.0).round() / 10.0,
            score,
            breaker: v.breaker,
            failures_1h: fails,
        });
    }
    let desired: Vec<&AccountHealth> = out.iter().filter(|a| a.desired_running).collect();
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
        healthy: counts.unhealthy(true).is_none(),
        accounts_total: counts.total,
        desired_running: counts.desired,
        desired_connected: counts.desired_connected,
        needs_operator: counts.needs_operator,
        by_state: counts.by_state_names(),
        breakers_open: out.iter().filter(|a| a.breaker == "open").count(),
        fleet_score,
        fleet_uptime_24h_pct: (fleet_uptime * 10.0).round() / 10.0,
        accounts: out,
        fleet: fleet_part(store).await,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::NewAccount;
    use crate::policy::breaker::Breaker;
    use crate::state::TriggeredBy;
    use crate::store::tests::temp_store;

    async fn stored(store: &Store) -> Vec<AccountView> {
        let accounts = store.accounts().await.expect("accounts");
        accounts
            .iter()
            .map(|a| AccountView::stored(a, &Breaker::default()))
            .collect()
    }

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
        let r = fleet_health(&store, now, &stored(&store).await)
            .await
            .expect("report");
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
            fleet_health(&store, now, &stored(&store).await)
                .await
                .expect("report")
                .healthy
        );
    }
}
