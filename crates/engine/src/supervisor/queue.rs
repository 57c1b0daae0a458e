//! The command queue: admin faces in other processes (`lifeline start 3`, …) write a row to the
//! `commands` table; the running supervisor (serve or desktop) polls it and applies each command
//! within a second. The database is already shared, so no socket or token is needed for this.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use tokio_util::sync::CancellationToken;

use super::{Supervisor, db};
use crate::error::Result;
use crate::model::AccountId;
use crate::store::{QueuedCommand, Store};

/// How often the running supervisor looks for new commands.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Start,
    Stop,
    Retry,
    Reset,
    StartAll,
    StopAll,
    ResetAll,
    CheckAll,
    /// An account was added: pick it up.
    Add,
    /// An account was removed: drop its task.
    Remove,
    /// An account's settings changed: reload them.
    Reload,
}

impl Queued {
    /// Every command (a test checks none is missing).
    pub const ALL: [Queued; 11] = [
        Queued::Start,
        Queued::Stop,
        Queued::Retry,
        Queued::Reset,
        Queued::StartAll,
        Queued::StopAll,
        Queued::ResetAll,
        Queued::CheckAll,
        Queued::Add,
        Queued::Remove,
        Queued::Reload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Queued::Start => "start",
            Queued::Stop => "stop",
            Queued::Retry => "retry",
            Queued::Reset => "reset",
            Queued::StartAll => "start-all",
            Queued::StopAll => "stop-all",
            Queued::ResetAll => "reset-all",
            Queued::CheckAll => "check-all",
            Queued::Add => "add",
            Queued::Remove => "remove",
            Queued::Reload => "reload",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// Queues a command for whichever supervisor runs on this store.
pub async fn enqueue(store: &Store, command: Queued, account: Option<AccountId>) -> Result<()> {
    store
        .enqueue_command(account, command.as_str(), chrono::Utc::now())
        .await
}

/// Applies queued commands until `stop` fires. Commands queued before this started were already
/// reflected in the store (desired flags, breakers) that startup read, so they are skipped.
pub async fn run(sup: Supervisor, stop: CancellationToken) {
    let store = sup.store().clone();
    let mut cursor = match db(store.last_command_id()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "command queue unavailable; CLI commands will not reach this supervisor");
            return;
        }
    };
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        polls += 1;
        let commands = match db(store.commands_after(cursor)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the command queue");
                continue;
            }
        };
        for c in commands {
            cursor = c.id;
            if let Err(e) = apply(&sup, &c).await {
                tracing::warn!(command = %c.command, account = ?c.account.map(|a| a.0), error = %e, "queued command failed");
            }
        }
        // About once a minute, forget commands older than an hour.
        if polls.is_multiple_of(240) {
            let _ = db(store.prune_commands(chrono::Utc::now() - ChronoDuration::hours(1))).await;
        }
    }
}

async fn apply(sup: &Supervisor, c: &QueuedCommand) -> Result<()> {
    let Some(cmd) = Queued::parse(&c.command) else {
        tracing::warn!(command = %c.command, "unknown queued command ignored");
        return Ok(());
    };
    tracing::info!(command = cmd.as_str(), account = ?c.account.map(|a| a.0), "queued command");
    match (cmd, c.account) {
        (Queued::StartAll, _) => sup.start_all().await,
        (Queued::StopAll, _) => sup.stop_all().await,
        (Queued::ResetAll, _) => sup.reset_all().await,
        (Queued::CheckAll, _) => {
            sup.check_all();
            Ok(())
        }
        (_, None) => Ok(()),
        (Queued::Start, Some(id)) => sup.start(id).await,
        (Queued::Stop, Some(id)) => sup.stop(id).await,
        (Queued::Retry, Some(id)) => sup.force_retry(id).await,
        (Queued::Reset, Some(id)) => sup.reset_breaker(id).await,
        (Queued::Add, Some(id)) => sup.add_account(id).await,
        (Queued::Remove, Some(id)) => sup.remove_account(id).await,
        (Queued::Reload, Some(id)) => sup.reload_account(id).await,
    }
}

#[cfg(test)]
mod tests {
    use super::Queued;

    #[test]
    fn all_lists_every_command() {
        // A match, so a new variant cannot be forgotten in ALL.
        for q in Queued::ALL {
            match q {
                Queued::Start
                | Queued::Stop
                | Queued::Retry
                | Queued::Reset
                | Queued::StartAll
                | Queued::StopAll
                | Queued::ResetAll
                | Queued::CheckAll
                | Queued::Add
                | Queued::Remove
                | Queued::Reload => {}
            }
        }
        let distinct: std::collections::HashSet<_> =
            Queued::ALL.iter().map(|q| q.as_str()).collect();
        assert_eq!(distinct.len(), Queued::ALL.len());
    }

    #[test]
    fn names_round_trip() {
        for q in Queued::ALL {
            assert_eq!(Queued::parse(q.as_str()), Some(q));
        }
        assert_eq!(Queued::parse("explode"), None);
    }
}
