//! WhatsApp device stores in the fleet store, sealed with the fleet key.

use sqlx::AssertSqlSafe;

use crate::lease::Lease;
use crate::sealed::{FleetKey, Purpose};
use crate::store::{FleetStore, Instance};
use crate::{AccountId, Error, Result};

impl FleetStore {
    /// Checks this host's fleet key against the fleet's fingerprint; the first key checked sets
    /// it. A host with another key is refused ([`Error::WrongKey`]) and writes nothing.
    pub async fn check_key(&self, key: &FleetKey) -> Result<()> {
        let here = key.fingerprint();
        let fleet: String = sqlx::query_scalar(
            "UPDATE lifeline_fleet SET key_fingerprint = coalesce(key_fingerprint, $1)
             RETURNING key_fingerprint",
        )
        .bind(&here)
        .fetch_one(&self.pool)
        .await?;
        if fleet == here {
            Ok(())
        } else {
            Err(Error::WrongKey {
                target: self.url().target(),
                fleet,
                here,
            })
        }
    }

    /// The fingerprint of the fleet's key, once a host has set it.
    pub async fn key_fingerprint(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_fingerprint FROM lifeline_fleet")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The account's device store, opened with `key`; `None` when none was stored.
    pub async fn device_store(
        &self,
        account: AccountId,
        key: &FleetKey,
    ) -> Result<Option<Vec<u8>>> {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed FROM device_stores WHERE account_id = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        Ok(sealed
            .map(|s| key.open(account, Purpose::DeviceStore, &s))
            .transpose()?)
    }
}

impl Instance {
    /// Stores the account's device store, sealed, under `lease`: refused (and nothing written)
    /// when the lease is stale, so an old owner can never overwrite the new owner's keys.
    pub async fn put_device_store(&self, lease: Lease, key: &FleetKey, plain: &[u8]) -> Result<()> {
        let sealed = key.seal(lease.account, Purpose::DeviceStore, plain)?;
        let mut tx = self.begin_fenced(lease).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO device_stores (account_id, sealed, epoch, updated_at)
             VALUES ($2, $3, $4, {now})
             ON CONFLICT (account_id) DO UPDATE
                SET sealed = EXCLUDED.sealed, epoch = EXCLUDED.epoch,
                    updated_at = EXCLUDED.updated_at",
            now = crate::lease::NOW
        )))
        .bind(self.store.clock_offset_s)
        .bind(lease.account)
        .bind(&sealed)
        .bind(lease.epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
