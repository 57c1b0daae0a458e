//! Operations while no supervisor runs on the data dir (the caller holds its lock): the same
//! lifecycle decides and the same writer records, exactly as a supervisor would — first closing
//! what a crashed run left active, as the next start would, so history stays true — and the
//! effects that need no connection (breaker, device keys) are carried out here.

use crate::clock::Clock;
use crate::connector::Connectors;
use crate::error::Result;
use crate::model::{Account, AccountId};
use crate::policy::jitter::Jitter;
use crate::policy::lifecycle::{self, Effect, Input, Lifecycle};
use crate::store::{Store, TransitionRecord};
use crate::supervisor::recorder;

/// Applies `input` to a stored account; returns the account as it was before.
pub(super) async fn apply(
    store: &Store,
    connectors: &Connectors,
    id: AccountId,
    input: Input,
) -> Result<Account> {
    let account = store.account(id).await?;
    let policy = store.policy().await?;
    let breaker = store.breaker(id).await?;
    let mut life = Lifecycle::loaded(
        account.state.clone(),
        account.state_since,
        account.desired_running,
        breaker,
    );
    let connector = connectors.get(account.kind);
    life.supported = connector.is_some();
    life.links = account.kind.links();
    life.needs_link = connector.is_some_and(|c| c.needs_link(&account));
    let now = chrono::Utc::now();
    let last = store.last_run().await?;
    let recover = Input::Recover {
        crashed: last.is_some_and(|r| !r.clean),
        at: store.last_heartbeat().await?.unwrap_or(now),
    };
    let mut jitter = Jitter::from_entropy();
    let mut records = Vec::new();
    let mut save_breaker = false;
    for input in [recover, input] {
        let d = lifecycle::next(&life, input, now, &policy, &mut jitter);
        life = d.next;
        if let Some(t) = d.transition {
            records.push(TransitionRecord {
                account_id: id,
                from: Some(t.from),
                to: t.to,
                detail: t.detail,
                triggered_by: t.by,
                at: t.at,
            });
        }
        for effect in d.effects {
            match effect {
                Effect::SaveBreaker => save_breaker = true,
                Effect::Forget => {
                    if let Some(c) = connector {
                        c.forget(&account)?;
                    }
                }
                // Nothing is connected here; the next supervisor acts on the recorded intent.
                _ => {}
            }
        }
    }
    if !records.is_empty() {
        let written = recorder::write_transitions(store, &Clock::System, records).await;
        if written.iter().any(Option::is_none) {
            return Err(crate::Error::Decode(format!(
                "the transition of account {id} could not be recorded"
            )));
        }
    }
    if save_breaker {
        recorder::write_breaker(store, &Clock::System, id, &life.breaker).await;
    }
    if life.desired != account.desired_running {
        store.set_desired_running(id, life.desired).await?;
    }
    Ok(account)
}
