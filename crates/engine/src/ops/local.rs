//! [`Control`] inside the supervising process: straight to the supervisor's account tasks.

use super::{Action, Control, Target, linkable};
use crate::connector::LinkMode;
use crate::error::Result;
use crate::model::{Account, AccountChange, AccountId, NewAccount};
use crate::policy::PolicyConfig;
use crate::policy::config::PolicyChange;
use crate::supervisor::Supervisor;

impl Control for Supervisor {
    async fn add(&self, new: NewAccount) -> Result<Account> {
        let account = self.store().add_account(new).await?;
        self.add_account(account.id).await?;
        Ok(account)
    }

    async fn remove(&self, id: AccountId) -> Result<Account> {
        self.remove_account(id).await
    }

    async fn act(&self, action: Action, target: Target) -> Result<usize> {
        let ids = match target {
            Target::One(id) => vec![id],
            Target::All => self.views().iter().map(|v| v.id).collect(),
        };
        for id in &ids {
            match action {
                Action::Start => self.start(*id).await?,
                Action::Stop => self.stop(*id).await?,
                Action::Retry => self.force_retry(*id).await?,
                Action::Reset => self.reset_breaker(*id).await?,
                Action::Check => self.check(*id)?,
            }
        }
        Ok(ids.len())
    }

    async fn update(&self, id: AccountId, change: AccountChange) -> Result<Account> {
        let account = self.store().update_account(id, change).await?;
        self.reload_account(id).await?;
        Ok(account)
    }

    async fn link(&self, id: AccountId, mode: LinkMode) -> Result<()> {
        linkable(&self.store().account(id).await?)?;
        self.request_link(id, mode).await
    }

    async fn set_policy(&self, policy: PolicyConfig) -> Result<Vec<PolicyChange>> {
        let changes = self.store().set_policy(&policy).await?;
        self.apply_policy(policy);
        Ok(changes)
    }
}
