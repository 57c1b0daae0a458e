//! The desktop as a fleet's console. Connected to a fleet store, this computer supervises
//! nothing: the fleet's instances (`lifeline serve --store …`) do. The window reads the accounts,
//! who holds each one and the instances from the store, and its operations reach the instance
//! holding the account through the store's command table, as the CLI's do (`ops::Queued`).
//!
//! Which fleet, if any, is this computer's own setting (its data dir's store): the URL there,
//! the password in the OS keyring under [`PASSWORD_SECRET`], the name the CLI reads it from too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_engine::fleet::AccountView;
use lifeline_engine::model::SecretName;
use lifeline_engine::ops::Queued;
use lifeline_engine::policy::alerts::{Alert, Alerter};
use lifeline_engine::secrets::{self, KeyringSecretStore, SecretStore, SecretValue};
use lifeline_engine::store::HistoryPage;
use lifeline_engine::{AccountId, DataDir, Error, Event, Store, TimeRange};
use lifeline_fleet::{FleetStore, StoreUrl};
use lifeline_runtime::Parts;
use tokio_util::sync::CancellationToken;

use crate::api::{Connection, FleetInstance, FleetStatus, Owner};

/// This computer's setting: the fleet store it is a console of.
pub const FLEET_URL_KEY: &str = "desktop.fleet_store";
/// The keyring secret with the fleet store's password (the CLI's `--password-secret` default).
pub const PASSWORD_SECRET: &str = "store-password";
/// How often the window's cards are read from the fleet store.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Connections a console keeps to the fleet store (reads, and one operation at a time).
const CONNECTIONS: u32 = 4;
/// An instance counts as alive while its heartbeats are this recent (they come every third of
/// the lease TTL).
const ALIVE_WITHIN: Duration = lifeline_fleet::DEFAULT_TTL;
/// How long adding an account waits for an instance to take it up before linking it.
const HELD_WITHIN: Duration = Duration::from_secs(15);

/// A console's connection: the fleet store and the last reading of it.
#[derive(Debug)]
pub struct Console {
    pub ops: Queued,
    pub fleet: FleetStore,
    stop: CancellationToken,
    read: Mutex<Reading>,
}

#[derive(Debug, Default)]
struct Reading {
    views: Vec<AccountView>,
    owners: HashMap<AccountId, Owner>,
}

impl Console {
    /// Connects to the fleet store at `url` with the password in this computer's keyring.
    /// Every refusal (a bad URL, an unreachable server, a wrong password, another program's
    /// database, a newer schema) is one line, and nothing is written.
    pub async fn open(dir: &DataDir, url: &str) -> Result<(Arc<Self>, Store), Error> {
        let password = secrets::fetch(keyring(), &password_name()?).await?;
        Self::connect(dir, url, password.as_ref()).await
    }

    /// [`Console::open`] with the password given.
    pub async fn connect(
        dir: &DataDir,
        url: &str,
        password: Option<&SecretValue>,
    ) -> Result<(Arc<Self>, Store), Error> {
        let url = StoreUrl::parse(url)?;
        let fleet =
            FleetStore::connect_with(&url, password.map(SecretValue::expose), CONNECTIONS).await?;
        let store = Store::fleet(&fleet);
        let console = Arc::new(Self {
            ops: Queued::new(dir.clone(), store.clone(), Parts::system(dir).connectors),
            fleet,
            stop: CancellationToken::new(),
            read: Mutex::default(),
        });
        if let Err(e) = console.refresh(&store).await {
            console.close().await;
            return Err(e);
        }
        Ok((console, store))
    }

    /// Cancelled when the window stops reading this fleet (disconnect, quit).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn close(&self) {
        self.stop.cancel();
        self.fleet.close().await;
    }

    /// Reads every account, its breaker and its holder from the store.
    pub async fn refresh(&self, store: &Store) -> Result<(), Error> {
        let (accounts, breakers, holders) =
            tokio::try_join!(store.accounts(), store.breakers(), async {
                Ok(self.fleet.holders().await?)
            },)?;
        let mut views: Vec<AccountView> = accounts
            .iter()
            .map(|a| AccountView::stored(a, &breakers.get(&a.id).cloned().unwrap_or_default()))
            .collect();
        lifeline_engine::fleet::sort(&mut views);
        let owners = holders
            .into_iter()
            .map(|h| (AccountId(h.account_id), Owner::from(h)))
            .collect();
        *self.reading() = Reading { views, owners };
        Ok(())
    }

    /// The accounts as last read.
    pub fn views(&self) -> Vec<AccountView> {
        self.reading().views.clone()
    }

    pub fn owner(&self, id: AccountId) -> Option<Owner> {
        self.reading().owners.get(&id).cloned()
    }

    /// The instances and the fleet's totals.
    pub async fn status(&self) -> Result<FleetStatus, Error> {
        let (instances, totals) = tokio::try_join!(
            self.fleet.instances(ALIVE_WITHIN),
            self.fleet.totals(ALIVE_WITHIN)
        )?;
        Ok(FleetStatus {
            url: self.fleet.url().to_string(),
            accounts: totals.accounts,
            leases_held: totals.leases_held,
            live_instances: totals.live_instances,
            takeovers: totals.takeovers,
            renew_failures: totals.renew_failures,
            stale_writes_refused: totals.stale_writes_refused,
            instances: instances.into_iter().map(FleetInstance::from).collect(),
        })
    }

    /// Waits (bounded) until an instance holds `id`'s lease: a new account is taken up by an
    /// instance with room on its next claim, and only the holder can link it.
    pub async fn wait_held(&self, id: AccountId) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + HELD_WITHIN;
        loop {
            if self.fleet.holder(id.0).await?.is_some() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn reading(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn keyring() -> Arc<dyn SecretStore> {
    Arc::new(KeyringSecretStore)
}

fn password_name() -> Result<SecretName, Error> {
    Ok(SecretName::parse(PASSWORD_SECRET)?)
}

/// Keeps the fleet store's password in the keyring (its name recorded in this computer's own
/// store, as every secret's is).
pub async fn keep_password(home: &Store, password: SecretValue) -> Result<(), Error> {
    secrets::set_secret(home, &KeyringSecretStore, &password_name()?, password).await
}

/// The fleet this computer is a console of: `LIFELINE_STORE` when set (as for the CLI), else the
/// one chosen in Settings.
pub async fn chosen(home: &Store) -> Result<Connection, Error> {
    if let Some(url) = std::env::var("LIFELINE_STORE")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Ok(Connection {
            fleet_store: Some(url),
            from_environment: true,
        });
    }
    // Leaving a fleet keeps the setting, empty (every setting change is logged).
    Ok(Connection {
        fleet_store: home.setting(FLEET_URL_KEY).await?.filter(|u| !u.is_empty()),
        from_environment: false,
    })
}

/// How many polls back the events are read again: ids come from one sequence, but instances
/// commit on their own, so an event may become visible after one with a higher id.
const REREAD_POLLS: usize = 3;

/// The fleet's alerts, decided here as a supervisor decides them (grace period, summaries,
/// mute, unstable), from the transitions the instances record in the store.
#[derive(Debug)]
pub struct Alerts {
    alerter: Alerter,
    /// Lowest event id still read again, per recent poll (oldest first).
    floors: VecDeque<i64>,
    /// Events already fed, above the oldest floor.
    seen: HashSet<i64>,
    newest: i64,
}

impl Alerts {
    /// Starts after the newest event recorded: only what happens from now on alerts.
    pub async fn start(store: &Store) -> Result<Self, Error> {
        let newest = store.last_event_id().await?;
        let alerter = Alerter::new(store.policy().await?.alerts);
        Ok(Self {
            alerter,
            floors: VecDeque::from([newest]),
            seen: HashSet::new(),
            newest,
        })
    }

    /// Takes the fleet's alert values again (an operator may have changed them anywhere).
    pub async fn configure(&mut self, store: &Store) -> Result<(), Error> {
        self.alerter.configure(store.policy().await?.alerts);
        Ok(())
    }

    /// Feeds the transitions recorded since the last read and answers the alerts now due.
    pub async fn read(
        &mut self,
        store: &Store,
        views: &[AccountView],
    ) -> Result<Vec<Alert>, Error> {
        let mut after = self.floor();
        loop {
            let page = store
                .events_page(HistoryPage {
                    account: None,
                    range: TimeRange::default(),
                    after: Some(after),
                    limit: lifeline_engine::store::MAX_PAGE,
                })
                .await?;
            let Some(last) = page.last().map(|e| e.id) else {
                break;
            };
            self.feed(&page, views);
            after = last;
        }
        self.polled();
        Ok(self.alerter.due(chrono::Utc::now()))
    }

    /// The lowest id read again.
    fn floor(&self) -> i64 {
        self.floors.front().copied().unwrap_or(self.newest)
    }

    /// Observes each event not seen before, once.
    fn feed(&mut self, events: &[Event], views: &[AccountView]) {
        for event in events {
            if event.id <= self.floor() || !self.seen.insert(event.id) {
                continue;
            }
            self.newest = self.newest.max(event.id);
            // An account removed meanwhile has nothing left to alert about.
            let Some(v) = views.iter().find(|v| v.id == event.account_id) else {
                continue;
            };
            self.alerter.observe(
                v.id,
                &v.name,
                v.muted,
                v.notify_live,
                event.from,
                &event.to,
                event.at,
            );
        }
    }

    /// One poll done: the floor moves up to what was newest [`REREAD_POLLS`] polls ago.
    fn polled(&mut self) {
        self.floors.push_back(self.newest);
        while self.floors.len() > REREAD_POLLS {
            self.floors.pop_front();
        }
        let floor = self.floor();
        self.seen.retain(|id| *id > floor);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use lifeline_engine::model::AccountKind;
    use lifeline_engine::policy::alerts::AlertConfig;
    use lifeline_engine::state::{Reason, StateKind, TriggeredBy};
    use lifeline_engine::{Event, State};

    use super::*;

    fn view(id: i64, name: &str) -> AccountView {
        AccountView {
            id: AccountId(id),
            name: name.to_owned(),
            kind: AccountKind::Websocket,
            url: Some("ws://127.0.0.1:9/".into()),
            priority: 0,
            country: None,
            proxy_url: None,
            muted: false,
            notify_live: false,
            desired_running: true,
            state: State::Connected,
            since: Utc::now(),
            breaker: "closed",
            reconnects: 0,
            created_at: Utc::now(),
            unstable_until: None,
            identity: None,
        }
    }

    fn drop_event(id: i64, account: i64, at: chrono::DateTime<Utc>) -> Event {
        Event {
            id,
            account_id: AccountId(account),
            at,
            from: StateKind::Connected,
            to: State::Backoff {
                attempt: 1,
                retry_at: at + Duration::seconds(1),
                reason: Reason::ClosedByPeer { code: None },
            },
            detail: None,
            triggered_by: TriggeredBy::Engine,
        }
    }

    fn alerts(newest: i64) -> Alerts {
        Alerts {
            alerter: Alerter::new(AlertConfig {
                grace_s: 0,
                ..AlertConfig::default()
            }),
            floors: VecDeque::from([newest]),
            seen: HashSet::new(),
            newest,
        }
    }

    fn down(alerts: &[Alert]) -> Vec<AccountId> {
        alerts
            .iter()
            .filter_map(|a| match a {
                Alert::Down { account, .. } => Some(*account),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_event_committed_late_still_alerts_and_none_alerts_twice() {
        let views = [view(1, "Shop A"), view(2, "Shop B")];
        let at = Utc::now() - Duration::seconds(5);
        let mut a = alerts(10);
        // What was there before the console started does not alert.
        a.feed(&[drop_event(9, 1, at)], &views);
        a.polled();
        assert!(a.alerter.due(Utc::now()).is_empty());
        // Event 12 is visible first; 11 (another instance's) commits after it.
        a.feed(&[drop_event(12, 2, at)], &views);
        a.polled();
        assert_eq!(down(&a.alerter.due(Utc::now())), vec![AccountId(2)]);
        // The next read starts below 12 again: 11 is found, 12 is not fed twice.
        a.feed(&[drop_event(11, 1, at), drop_event(12, 2, at)], &views);
        a.polled();
        assert_eq!(down(&a.alerter.due(Utc::now())), vec![AccountId(1)]);
        // After REREAD_POLLS polls the floor has passed them: they are not read again.
        for _ in 0..REREAD_POLLS {
            a.polled();
        }
        assert_eq!(a.floor(), 12);
        assert!(a.seen.is_empty());
        a.feed(&[drop_event(11, 1, at)], &views);
        assert!(a.alerter.due(Utc::now()).is_empty());
    }

    #[test]
    fn a_removed_account_does_not_alert() {
        let mut a = alerts(0);
        a.feed(&[drop_event(1, 7, Utc::now())], &[view(1, "Shop A")]);
        a.polled();
        assert!(a.alerter.due(Utc::now()).is_empty());
    }
}
