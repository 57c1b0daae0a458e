//! The command table's reader in the supervising process: operations from faces in other
//! processes (the CLI) are applied within a moment and answered, so the CLI can report the
//! outcome. The database is already shared, so no socket or token is needed for this.

use std::time::Duration;

use chrono::Duration as ChronoDuration;

use super::{Supervisor, Update};
use crate::connector::LinkMode;
use crate::error::Result;
use crate::model::AccountId;
use crate::ops::{Control, Op};
use crate::state::StateKind;
use crate::store::{CommandOutcome, QueuedCommand};

/// How often the running supervisor looks for new commands.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// How long a link asked for from another process may take before its code stops being kept.
pub const LINK_WATCH: Duration = Duration::from_secs(15 * 60);

/// Applies queued commands until the supervisor stops. Commands queued before it started are
/// left to the offline path of whoever queued them (see `ops::Queued`).
pub async fn run(sup: Supervisor) {
    let stop = sup.stopping();
    let store = sup.store().clone();
    let clock = sup.clock();
    let mut cursor = match clock.hold(store.last_command_id()).await {
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
        let commands = match clock.hold(store.commands_after(cursor)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the command queue");
                continue;
            }
        };
        for c in commands {
            cursor = c.id;
            if !mine(&store, &c) {
                continue;
            }
            let outcome = match apply(&sup, &c).await {
                Ok(()) => CommandOutcome::Done,
                Err(e) => {
                    tracing::warn!(command = %c.name, error = %e, "queued command failed");
                    CommandOutcome::Failed {
                        message: e.to_string(),
                        input: e.is_input(),
                    }
                }
            };
            if let Err(e) = clock.hold(store.answer_command(c.id, &outcome)).await {
                tracing::warn!(command = %c.name, error = %e, "could not answer a queued command");
            }
        }
        // About once a minute, forget commands older than an hour.
        if polls.is_multiple_of(240) {
            let _ = clock
                .hold(store.prune_commands(chrono::Utc::now() - ChronoDuration::hours(1)))
                .await;
        }
    }
}

/// Whether this supervisor acts on `c`. On a fleet store every instance reads every command:
/// one about an account is applied and answered by the instance holding its lease (the others
/// leave it); one about every account, or the policy, by each instance for its own accounts
/// (the first answer stands).
fn mine(store: &crate::store::Store, c: &QueuedCommand) -> bool {
    let Some(fence) = store.fence() else {
        return true;
    };
    c.op.as_ref()
        .and_then(Op::account)
        .is_none_or(|id| fence.holds(id))
}

async fn apply(sup: &Supervisor, c: &QueuedCommand) -> Result<()> {
    let Some(op) = &c.op else {
        tracing::warn!(command = %c.name, "unknown queued command ignored");
        return Ok(());
    };
    tracing::info!(command = %c.name, "queued command");
    match op.clone() {
        Op::Act(action, target) => sup.act(action, target).await.map(drop),
        // On a fleet store a new account's lease is claimed by an instance with room.
        Op::Add(_) if sup.store().is_fleet() => Ok(()),
        Op::Add(id) => sup.add_account(id).await,
        Op::Remove(id) => sup.remove(id).await.map(drop),
        Op::Reload(id) => sup.reload_account(id).await,
        Op::Policy => sup.reload_policy().await,
        Op::Link(id, mode) => link_for_another(sup, id, mode).await,
    }
}

/// Links `id` for a face that reads the codes from the store (the CLI, the HTTP API) rather
/// than from this process's updates: the codes are kept there until linking ends.
pub async fn link_for_another(sup: &Supervisor, id: AccountId, mode: LinkMode) -> Result<()> {
    // Subscribed first, so the first code is not missed.
    let watch = keep_link_codes(sup.clone(), id);
    sup.link(id, mode).await?;
    tokio::spawn(watch);
    Ok(())
}

/// Keeps the current link code of `id` in the store for the process that asked for the link,
/// until linking ends one way or another; then deletes it.
pub fn keep_link_codes(
    sup: Supervisor,
    id: AccountId,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut updates = sup.subscribe();
    async move {
        let store = sup.store().clone();
        let clock = sup.clock();
        let stop = sup.stopping();
        let give_up = tokio::time::sleep(LINK_WATCH);
        tokio::pin!(give_up);
        loop {
            let update = tokio::select! {
                _ = stop.cancelled() => break,
                _ = &mut give_up => break,
                u = updates.recv() => u,
            };
            match update {
                Ok(Update::Link { account, code }) if account == id => {
                    if let Err(e) = clock.hold(store.put_link_code(id, &code)).await {
                        tracing::warn!(account = id.0, error = %e, "link code not kept for the CLI");
                    }
                }
                Ok(Update::Transitions(events)) => {
                    let over = events.iter().any(|e| {
                        e.account_id == id
                            && matches!(
                                e.to.kind(),
                                StateKind::Connected
                                    | StateKind::Waiting
                                    | StateKind::Stopped
                                    | StateKind::Paused
                                    | StateKind::NeedsOperator
                            )
                    });
                    if over {
                        break;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        let _ = clock.hold(store.clear_link_code(id)).await;
    }
}
