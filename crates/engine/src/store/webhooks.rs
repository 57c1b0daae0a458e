//! Webhook endpoints and the outbox. Messages about transitions are written by the `events_outbox`
//! trigger inside the transaction that records the event; the rest (alerts, tests) are queued
//! here. Deliveries leave in order per (endpoint, account): only the oldest pending delivery of
//! each pair is ever handed out.

use std::collections::HashSet;

use chrono::Utc;

use super::{Begin, Db, Store, encode, on_db};
use crate::error::{Error, InputError, Result};
use crate::model::{AccountId, SecretName};
use crate::time::{Timestamp, from_ms, to_ms};
use crate::webhook::{
    Attempt, AttemptResult, Delivery, DeliveryQueue, DeliveryStatus, NewWebhook, OutboxStats,
    WebhookEndpoint,
};

macro_rules! endpoint_columns {
    () => {
        "id, url, events, accounts, enabled, disabled_reason, secret_name, \
     old_secret_name, old_secret_until, failing_since, created_at"
    };
}

/// Deliveries with their webhook-id and their data: a message about a transition reads it from
/// the event (and the account's name as it is when sent). Filters follow as `WHERE …`. The
/// data is built as JSON by the database; only the words for that differ between SQLite
/// (`json_object`, `json(…)`) and PostgreSQL (`json_build_object`, `…::json`, a float).
macro_rules! delivery_select {
    () => {
        delivery_select!(
            "json_object(",
            "json(e.state_json)",
            "(e.at - s.started_at) / 1000.0",
            ""
        )
    };
    (pg) => {
        delivery_select!(
            "json_build_object(",
            "e.state_json::json",
            "((e.at - s.started_at) / 1000.0)::float8",
            "::text"
        )
    };
    ($object:literal, $state:literal, $seconds:literal, $close:literal) => {
        concat!(
            "SELECT d.id, d.endpoint_id, \
               'msg_' || (SELECT value FROM settings WHERE key = 'webhook.id_prefix') || d.id \
                 AS msg_id, \
               d.account_id, d.event_id, d.type, \
               COALESCE(d.data, ",
            $object,
            "'event_id', e.id, \
               'account_id', e.account_id, \
               'account_name', a.name, \
               'account_kind', a.kind, \
               'from', e.from_state, \
               'to', e.to_state, \
               'reason', e.reason, \
               'state', ",
            $state,
            ", \
               'detail', e.detail, \
               'triggered_by', e.triggered_by, \
               'connected_for_s', CASE WHEN e.from_state = 'connected' THEN \
                   (SELECT ",
            $seconds,
            " FROM sessions AS s \
                    WHERE s.account_id = e.account_id AND s.ended_at = e.at \
                    ORDER BY s.started_at DESC LIMIT 1) END)",
            $close,
            ") AS data, \
               d.at, d.status, d.attempts, d.next_at, d.last_at, d.last_code, d.last_error, \
               d.done_at \
             FROM webhook_deliveries AS d \
             LEFT JOIN events AS e ON e.id = d.event_id \
             LEFT JOIN accounts AS a ON a.id = e.account_id "
        )
    };
}

/// A statement that reads deliveries, on either database (the rest of the text is the same).
macro_rules! deliveries_sql {
    ($store:expr, $($rest:expr),+ $(,)?) => {
        if $store.is_fleet() {
            concat!(delivery_select!(pg), $($rest),+)
        } else {
            concat!(delivery_select!(), $($rest),+)
        }
    };
}

/// Narrows `webhook_deliveries AS d` to the head of each (endpoint, account) queue of an
/// enabled endpoint; more conditions follow as `AND …`.
macro_rules! queue_heads {
    () => {
        " JOIN webhook_endpoints AS w ON w.id = d.endpoint_id \
           AND w.enabled = TRUE AND w.removed_at IS NULL \
         WHERE d.id IN (SELECT MIN(id) FROM webhook_deliveries WHERE status = 'pending' \
                        GROUP BY endpoint_id, account_id)"
    };
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: i64,
    url: String,
    events: Option<String>,
    accounts: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    secret_name: String,
    old_secret_name: Option<String>,
    old_secret_until: Option<i64>,
    failing_since: Option<i64>,
    created_at: i64,
}

impl EndpointRow {
    fn into_endpoint(self) -> Result<WebhookEndpoint> {
        let decode = |e: serde_json::Error| Error::Decode(format!("webhook {}: {e}", self.id));
        let secret = |s: String| {
            SecretName::parse(&s).map_err(|e| Error::Decode(format!("webhook {}: {e}", self.id)))
        };
        let events = match &self.events {
            Some(j) => Some(serde_json::from_str(j).map_err(decode)?),
            None => None,
        };
        let accounts = match &self.accounts {
            Some(j) => Some(
                serde_json::from_str::<Vec<i64>>(j)
                    .map_err(decode)?
                    .into_iter()
                    .map(AccountId)
                    .collect(),
            ),
            None => None,
        };
        let old_secret = match (self.old_secret_name, self.old_secret_until) {
            (Some(name), Some(until)) => Some((secret(name)?, from_ms(until))),
            _ => None,
        };
        Ok(WebhookEndpoint {
            id: self.id,
            url: self.url,
            events,
            accounts,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            secret_name: secret(self.secret_name)?,
            old_secret,
            failing_since: self.failing_since.map(from_ms),
            created_at: from_ms(self.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    endpoint_id: i64,
    msg_id: String,
    account_id: Option<i64>,
    event_id: Option<i64>,
    #[sqlx(rename = "type")]
    kind: String,
    data: String,
    at: i64,
    status: String,
    attempts: i64,
    next_at: i64,
    last_at: Option<i64>,
    last_code: Option<i64>,
    last_error: Option<String>,
    done_at: Option<i64>,
}

impl DeliveryRow {
    fn into_delivery(self) -> Result<Delivery> {
        let mut data: serde_json::Value = serde_json::from_str(&self.data)
            .map_err(|e| Error::Decode(format!("webhook delivery {}: {e}", self.id)))?;
        // Seconds are always sent as a fraction (`9.0`), whichever database wrote them:
        // PostgreSQL writes a whole number of seconds as `9`.
        if let Some(seconds) = data.get_mut("connected_for_s")
            && let Some(n) = seconds.as_f64().and_then(serde_json::Number::from_f64)
        {
            *seconds = serde_json::Value::Number(n);
        }
        Ok(Delivery {
            id: self.id,
            endpoint_id: self.endpoint_id,
            msg_id: self.msg_id,
            account_id: self.account_id.map(AccountId),
            event_id: self.event_id,
            kind: self.kind,
            data,
            at: from_ms(self.at),
            status: DeliveryStatus::parse(&self.status),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_at: from_ms(self.next_at),
            last_at: self.last_at.map(from_ms),
            last_code: self.last_code.and_then(|c| u16::try_from(c).ok()),
            last_error: self.last_error,
            done_at: self.done_at.map(from_ms),
        })
    }
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryFilter {
    pub endpoint: Option<i64>,
    pub failed_only: bool,
    /// Most rows, newest first.
    pub limit: u32,
}

impl Store {
    /// Adds an endpoint; its accounts must exist. Returns it as stored.
    pub async fn add_webhook(&self, new: NewWebhook) -> Result<WebhookEndpoint> {
        if let Some(ids) = &new.accounts {
            for id in ids {
                self.account(*id).await?;
            }
        }
        let accounts = new
            .accounts
            .as_ref()
            .map(|ids| encode(&ids.iter().map(|a| a.0).collect::<Vec<_>>()))
            .transpose()?;
        let events = new.events.as_ref().map(encode).transpose()?;
        let id: i64 = on_db!(self, pool => sqlx::query_scalar(
            "INSERT INTO webhook_endpoints (url, events, accounts, secret_name, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(new.url.as_str())
        .bind(events)
        .bind(accounts)
        .bind(new.secret_name.as_str())
        .bind(to_ms(Utc::now()))
        .fetch_one(pool)
        .await?);
        self.webhook(id).await
    }

    /// Every endpoint not removed, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let rows: Vec<EndpointRow> = on_db!(self, pool => sqlx::query_as(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY id"
        ))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(EndpointRow::into_endpoint).collect()
    }

    pub async fn webhook(&self, id: i64) -> Result<WebhookEndpoint> {
        let row: Option<EndpointRow> = on_db!(self, pool => sqlx::query_as(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM webhook_endpoints WHERE id = $1 AND removed_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?);
        row.ok_or(InputError::UnknownWebhook(id))?.into_endpoint()
    }

    /// Turns an endpoint on or off. Turning it on clears its failing streak; deliveries that
    /// waited while it was off go out from now.
    pub async fn set_webhook_enabled(
        &self,
        id: i64,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<WebhookEndpoint> {
        let now = to_ms(Utc::now());
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE webhook_endpoints SET enabled = $1, disabled_reason = $2, \
                   failing_since = CASE WHEN $1 THEN NULL ELSE failing_since END \
                 WHERE id = $3 AND removed_at IS NULL",
            )
            .bind(enabled)
            .bind(if enabled { None } else { reason })
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(InputError::UnknownWebhook(id).into());
            }
            if enabled {
                sqlx::query(
                    "UPDATE webhook_deliveries \
                     SET next_at = CASE WHEN next_at < $1 THEN next_at ELSE $1 END \
                     WHERE endpoint_id = $2 AND status = 'pending'",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.webhook(id).await
    }

    /// Removes an endpoint; its pending deliveries are dropped as failed (the list keeps them).
    /// Returns it as it was, so the caller can delete its secrets.
    pub async fn remove_webhook(&self, id: i64) -> Result<WebhookEndpoint> {
        let endpoint = self.webhook(id).await?;
        let now = to_ms(Utc::now());
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE webhook_endpoints SET removed_at = $1, enabled = FALSE WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', done_at = $1, \
                   last_error = 'endpoint removed' WHERE endpoint_id = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(endpoint)
    }

    /// Starts signing with `new` while the current secret keeps signing until `old_until`.
    /// Returns the secret of an earlier rotation that this one ends (to delete from the
    /// keyring), if any.
    pub async fn rotate_webhook_secret(
        &self,
        id: i64,
        new: &SecretName,
        old_until: Timestamp,
    ) -> Result<Option<SecretName>> {
        let endpoint = self.webhook(id).await?;
        on_db!(self, pool => sqlx::query(
            "UPDATE webhook_endpoints SET old_secret_name = secret_name, old_secret_until = $1, \
               secret_name = $2 WHERE id = $3",
        )
        .bind(to_ms(old_until))
        .bind(new.as_str())
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(endpoint.old_secret.map(|(name, _)| name))
    }

    /// Ends a rotation whose window has passed: the old secret no longer signs.
    pub async fn end_webhook_rotation(&self, id: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE webhook_endpoints SET old_secret_name = NULL, old_secret_until = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Queues a message that announces no transition (an alert, a summary) for every endpoint
    /// (on or off: one that is off gets it once turned on) that wants `filter` and, when it is
    /// about one account, that account.
    pub async fn enqueue_webhook_message(
        &self,
        filter: &str,
        kind: &str,
        account: Option<AccountId>,
        data: &serde_json::Value,
        at: Timestamp,
    ) -> Result<u64> {
        let sql = if self.is_fleet() {
            "INSERT INTO webhook_deliveries (endpoint_id, account_id, type, data, at, next_at) \
             SELECT w.id, $1, $2, $3, $4, $4 \
             FROM webhook_endpoints AS w \
             WHERE w.removed_at IS NULL \
               AND ($1 IS NULL OR w.accounts IS NULL \
                    OR w.accounts::jsonb @> jsonb_build_array($1)) \
               AND (w.events IS NULL OR w.events::jsonb @> jsonb_build_array($5)) \
             ORDER BY w.id"
        } else {
            "INSERT INTO webhook_deliveries (endpoint_id, account_id, type, data, at, next_at) \
             SELECT w.id, $1, $2, $3, $4, $4 \
             FROM webhook_endpoints AS w \
             WHERE w.removed_at IS NULL \
               AND ($1 IS NULL OR w.accounts IS NULL \
                    OR EXISTS (SELECT 1 FROM json_each(w.accounts) WHERE value = $1)) \
               AND (w.events IS NULL \
                    OR EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = $5)) \
             ORDER BY w.id"
        };
        let data = encode(data)?;
        let n = on_db!(self, pool => sqlx::query(sql)
            .bind(account.map(|a| a.0))
            .bind(kind)
            .bind(&data)
            .bind(to_ms(at))
            .bind(filter)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n)
    }

    /// Queues a test message for one endpoint, whatever it filters, to go at `send_at`.
    pub async fn enqueue_webhook_test(
        &self,
        id: i64,
        at: Timestamp,
        send_at: Timestamp,
    ) -> Result<Delivery> {
        let endpoint = self.webhook(id).await?;
        let data = serde_json::json!({ "endpoint_id": endpoint.id, "url": endpoint.url });
        let data = encode(&data)?;
        let delivery: i64 = on_db!(self, pool => sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (endpoint_id, type, data, at, next_at) \
             VALUES ($1, 'webhook.test', $2, $3, $4) RETURNING id",
        )
        .bind(id)
        .bind(&data)
        .bind(to_ms(at))
        .bind(to_ms(send_at))
        .fetch_one(pool)
        .await?);
        self.delivery(delivery).await
    }

    pub async fn delivery(&self, id: i64) -> Result<Delivery> {
        let sql = deliveries_sql!(self, "WHERE d.id = $1");
        let row: Option<DeliveryRow> = on_db!(self, pool => sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.ok_or(InputError::UnknownDelivery(id))?.into_delivery()
    }

    /// Deliveries, newest first.
    pub async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>> {
        let sql = deliveries_sql!(
            self,
            "WHERE ($1 IS NULL OR d.endpoint_id = $1) AND (NOT $2 OR d.status = 'failed') \
             ORDER BY d.id DESC LIMIT $3"
        );
        let rows: Vec<DeliveryRow> = on_db!(self, pool => sqlx::query_as(sql)
            .bind(filter.endpoint)
            .bind(filter.failed_only)
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(DeliveryRow::into_delivery).collect()
    }

    /// The deliveries due now, at most `limit`: the head of each (endpoint, account) queue of an
    /// enabled endpoint, except the queues in `busy` (being sent), soonest first.
    pub async fn due_deliveries(
        &self,
        now: Timestamp,
        busy: &HashSet<DeliveryQueue>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        // Busy queues are left out here rather than in SQL: a list to search for every pending
        // queue would make each read cost queues × busy.
        let wanted = i64::from(limit) + i64::try_from(busy.len()).unwrap_or(i64::MAX / 2);
        let rows: Vec<DeliveryRow> = match (&self.db, self.fence()) {
            // An instance of a fleet sends the messages about the accounts it holds, and the
            // oldest live instance those about no one account: each message leaves one sender.
            (Db::Postgres { pool, .. }, Some(fence)) => {
                let held: Vec<i64> = fence.accounts().iter().map(|a| a.0).collect();
                sqlx::query_as(concat!(
                    delivery_select!(pg),
                    queue_heads!(),
                    " AND d.next_at <= $1 \
                      AND (d.account_id = ANY($3) \
                           OR (d.account_id IS NULL AND $4 = (\
                               SELECT id FROM fleet_instances \
                                WHERE stopped_at IS NULL \
                                  AND heartbeat_at > now() - interval '1 minute' \
                                ORDER BY started_at, id LIMIT 1))) \
                     ORDER BY d.next_at, d.id LIMIT $2"
                ))
                .bind(to_ms(now))
                .bind(wanted)
                .bind(&held)
                .bind(fence.instance().id().as_str())
                .fetch_all(pool)
                .await?
            }
            _ => {
                let sql = deliveries_sql!(
                    self,
                    queue_heads!(),
                    " AND d.next_at <= $1 ORDER BY d.next_at, d.id LIMIT $2"
                );
                on_db!(self, pool => sqlx::query_as(sql)
                    .bind(to_ms(now))
                    .bind(wanted)
                    .fetch_all(pool)
                    .await?)
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let d = row.into_delivery()?;
            if !busy.contains(&d.queue()) && out.len() < limit as usize {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The head of one queue when it is due at `now`.
    pub async fn next_in_queue(
        &self,
        queue: DeliveryQueue,
        now: Timestamp,
    ) -> Result<Option<Delivery>> {
        let sql = deliveries_sql!(
            self,
            "WHERE d.endpoint_id = $1 AND d.account_id IS NOT DISTINCT FROM $2 \
               AND d.status = 'pending' ORDER BY d.id LIMIT 1"
        );
        let row: Option<DeliveryRow> = on_db!(self, pool => sqlx::query_as(sql)
            .bind(queue.endpoint)
            .bind(queue.account.map(|a| a.0))
            .fetch_optional(pool)
            .await?);
        let head = row.map(DeliveryRow::into_delivery).transpose()?;
        Ok(head.filter(|d| d.next_at <= now))
    }

    /// When the next queue head of an enabled endpoint falls due after `now` (`None`: none
    /// waits). Heads already due are left out: they are being sent, or read by
    /// [`Store::due_deliveries`].
    pub async fn next_delivery_at(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        let at: Option<i64> = on_db!(self, pool => sqlx::query_scalar(concat!(
            "SELECT MIN(d.next_at) FROM webhook_deliveries AS d ",
            queue_heads!(),
            " AND d.next_at > $1"
        ))
        .bind(to_ms(now))
        .fetch_one(pool)
        .await?);
        Ok(at.map(from_ms))
    }

    /// Records one attempt of `delivery` and what it means for its endpoint. Returns the
    /// endpoint's failing streak start (`None` once it succeeded).
    pub async fn record_attempt(
        &self,
        delivery: i64,
        result: &AttemptResult,
        at: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let attempt = Attempt {
            delivery,
            result: result.clone(),
            at,
        };
        let mut out = self.record_attempts(std::slice::from_ref(&attempt)).await?;
        Ok(out.pop().flatten())
    }

    /// Records attempts in one transaction, in order; for each, its endpoint's failing streak
    /// start afterwards (`None` once it succeeded).
    pub async fn record_attempts(&self, attempts: &[Attempt]) -> Result<Vec<Option<Timestamp>>> {
        on_db!(self, pool => {
        let mut tx = pool.begin_write().await?;
        let mut out = Vec::with_capacity(attempts.len());
        for Attempt {
            delivery,
            result,
            at,
        } in attempts
        {
            let (delivery, at) = (*delivery, to_ms(*at));
            let endpoint: Option<i64> =
                sqlx::query_scalar("SELECT endpoint_id FROM webhook_deliveries WHERE id = $1")
                    .bind(delivery)
                    .fetch_optional(&mut *tx)
                    .await?;
            let endpoint = endpoint.ok_or(InputError::UnknownDelivery(delivery))?;
            let (status, code, error, next_at) = match result {
                AttemptResult::Delivered { code } => ("delivered", Some(*code), None, None),
                AttemptResult::Retry {
                    code,
                    error,
                    retry_at,
                } => (
                    "pending",
                    *code,
                    Some(error.as_str()),
                    Some(to_ms(*retry_at)),
                ),
                AttemptResult::Exhausted { code, error } => {
                    ("failed", *code, Some(error.as_str()), None)
                }
                AttemptResult::Gone { code } => (
                    "failed",
                    Some(*code),
                    Some("the endpoint answered 410 Gone"),
                    None,
                ),
            };
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_at = $2, \
                   last_code = $3, last_error = $4, next_at = COALESCE($5, next_at), \
                   done_at = CASE WHEN $1 = 'pending' THEN NULL ELSE $2 END \
                 WHERE id = $6",
            )
            .bind(status)
            .bind(at)
            .bind(code.map(i64::from))
            .bind(error)
            .bind(next_at)
            .bind(delivery)
            .execute(&mut *tx)
            .await?;
            let delivered = matches!(result, AttemptResult::Delivered { .. });
            let gone = match result {
                AttemptResult::Gone { code } => Some(format!(
                    "the endpoint answered {code} Gone: it asked not to be sent anything more"
                )),
                _ => None,
            };
            let failing: Option<i64> = sqlx::query_scalar(
                "UPDATE webhook_endpoints SET \
                   failing_since = CASE WHEN $1 THEN NULL ELSE COALESCE(failing_since, $2) END, \
                   enabled = CASE WHEN $3 IS NULL THEN enabled ELSE FALSE END, \
                   disabled_reason = COALESCE($3, disabled_reason) \
                 WHERE id = $4 RETURNING failing_since",
            )
            .bind(delivered)
            .bind(at)
            .bind(gone)
            .bind(endpoint)
            .fetch_one(&mut *tx)
            .await?;
            out.push(failing.map(from_ms));
        }
        tx.commit().await?;
        Ok(out)
        })
    }

    /// Sends a delivery again (same `webhook-id`), from now, with a fresh schedule.
    pub async fn replay_delivery(&self, id: i64) -> Result<Delivery> {
        let n = on_db!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_at = $1, \
               done_at = NULL WHERE id = $2",
        )
        .bind(to_ms(Utc::now()))
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        if n == 0 {
            return Err(InputError::UnknownDelivery(id).into());
        }
        self.delivery(id).await
    }

    /// Sends every failed delivery again (of one endpoint, or all); returns how many.
    pub async fn replay_failed(&self, endpoint: Option<i64>) -> Result<u64> {
        if let Some(id) = endpoint {
            self.webhook(id).await?;
        }
        Ok(on_db!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_at = $1, \
               done_at = NULL \
             WHERE status = 'failed' AND ($2 IS NULL OR endpoint_id = $2) \
               AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE removed_at IS NULL)",
        )
        .bind(to_ms(Utc::now()))
        .bind(endpoint)
        .execute(pool)
        .await?
        .rows_affected()))
    }

    /// What waits, its oldest, and what failed for good (read from partial indexes, so a
    /// long history of delivered messages costs nothing here).
    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        let (pending, oldest, failed): (i64, Option<i64>, i64) = on_db!(self, pool =>
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'), \
                        (SELECT MIN(at) FROM webhook_deliveries WHERE status = 'pending'), \
                        (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'failed')",
            )
            .fetch_one(pool)
            .await?);
        Ok(OutboxStats {
            pending: u64::try_from(pending).unwrap_or(0),
            failed: u64::try_from(failed).unwrap_or(0),
            oldest_pending_at: oldest.map(from_ms),
        })
    }

    /// Forgets delivered messages done before `before` (failed ones stay, to be replayed).
    pub async fn prune_delivered(&self, before: Timestamp) -> Result<u64> {
        Ok(on_db!(self, pool => sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND done_at < $1",
        )
        .bind(to_ms(before))
        .execute(pool)
        .await?
        .rows_affected()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::model::{AccountKind, NewAccount};
    use crate::state::{Reason, State, TriggeredBy};
    use crate::store::tests::temp_store;
    use crate::webhook::WebhookUrl;

    async fn endpoint(
        store: &Store,
        events: Option<&str>,
        accounts: Option<Vec<AccountId>>,
    ) -> i64 {
        store
            .add_webhook(NewWebhook {
                url: WebhookUrl::parse("http://127.0.0.1:9/hook").expect("url"),
                events: events.map(|e| {
                    crate::webhook::parse_event_filters(e)
                        .expect("filters")
                        .expect("some")
                }),
                accounts,
                secret_name: SecretName::parse("webhook-test").expect("name"),
            })
            .await
            .expect("add webhook")
            .id
    }

    /// A store with account "a" and an endpoint taking every message.
    async fn one_account_one_endpoint() -> (tempfile::TempDir, Store, crate::model::Account, i64) {
        let (tmp, store) = temp_store().await;
        let a = store
            .add_account(NewAccount::new(AccountKind::Websocket, "a").with_url("ws://h/"))
            .await
            .expect("add");
        let id = endpoint(&store, None, None).await;
        (tmp, store, a, id)
    }

    async fn record(store: &Store, id: AccountId, to: State, at: Timestamp) {
        store
            .record_transition(id, to, None, TriggeredBy::Engine, at)
            .await
            .expect("record");
    }

    #[tokio::test]
    async fn each_recorded_event_queues_one_message_per_endpoint_that_wants_it() {
        let (_tmp, store) = temp_store().await;
        let a = store
            .add_account(NewAccount::new(AccountKind::Websocket, "shop").with_url("ws://h/"))
            .await
            .expect("add");
        let b = store
            .add_account(NewAccount::new(AccountKind::Websocket, "other").with_url("ws://h/"))
            .await
            .expect("add");
        let all = endpoint(&store, None, None).await;
        let needs = endpoint(&store, Some("needs_operator"), None).await;
        let only_b = endpoint(&store, Some("state"), Some(vec![b.id])).await;
        let t0 = Utc::now();
        for (to, s) in [
            (State::Connecting, 0),
            (State::Connected, 1),
            (
                State::NeedsOperator {
                    reason: Reason::LoggedOut,
                },
                31,
            ),
        ] {
            record(&store, a.id, to, t0 + Duration::seconds(s)).await;
        }
        let listed = store
            .deliveries(DeliveryFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list");
        let mut seen: Vec<(i64, String)> = listed
            .iter()
            .map(|d| (d.endpoint_id, d.kind.clone()))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (all, "account.connected".to_owned()),
                (all, "account.needs_operator".to_owned()),
                (all, "account.state_changed".to_owned()),
                (needs, "account.needs_operator".to_owned()),
            ]
        );
        let logged_out = listed
            .iter()
            .find(|d| d.endpoint_id == needs)
            .expect("needs");
        assert_eq!(logged_out.data["account_name"], "shop");
        assert_eq!(logged_out.data["reason"], "logged-out");
        assert_eq!(logged_out.data["connected_for_s"], 30.0);
        assert!(logged_out.msg_id.starts_with("msg_"));
        assert!(listed.iter().all(|d| d.endpoint_id != only_b));
        // Order per (endpoint, account): only the head of the first endpoint's queue is due.
        let due = store
            .due_deliveries(t0 + Duration::seconds(60), &HashSet::new(), 10)
            .await
            .expect("due");
        let firsts: Vec<_> = due
            .iter()
            .map(|d| (d.endpoint_id, d.kind.as_str()))
            .collect();
        assert_eq!(
            firsts,
            [
                (all, "account.state_changed"),
                (needs, "account.needs_operator")
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_head_holds_its_queue_until_it_is_done_and_gone_disables() {
        let (_tmp, store, a, id) = one_account_one_endpoint().await;
        let t0 = Utc::now();
        for s in 0..3 {
            let to = if s % 2 == 0 {
                State::Connecting
            } else {
                State::Connected
            };
            record(&store, a.id, to, t0 + Duration::seconds(s)).await;
        }
        let later = t0 + Duration::seconds(10);
        let head = store
            .due_deliveries(later, &HashSet::new(), 10)
            .await
            .expect("due");
        assert_eq!(head.len(), 1);
        let retry_at = later + Duration::seconds(5);
        let failing = store
            .record_attempt(
                head[0].id,
                &AttemptResult::Retry {
                    code: Some(500),
                    error: "HTTP 500".into(),
                    retry_at,
                },
                later,
            )
            .await
            .expect("attempt");
        assert_eq!(
            failing.map(crate::time::to_ms),
            Some(crate::time::to_ms(later))
        );
        assert!(
            store
                .due_deliveries(later, &HashSet::new(), 10)
                .await
                .expect("due")
                .is_empty()
        );
        assert_eq!(
            store
                .next_delivery_at(later)
                .await
                .expect("next")
                .map(to_ms),
            Some(to_ms(retry_at))
        );
        // Busy heads are not handed out twice.
        assert!(
            store
                .due_deliveries(retry_at, &HashSet::from([head[0].queue()]), 10)
                .await
                .expect("due")
                .is_empty()
        );
        store
            .record_attempt(
                head[0].id,
                &AttemptResult::Delivered { code: 204 },
                retry_at,
            )
            .await
            .expect("delivered");
        let next = store
            .due_deliveries(retry_at, &HashSet::new(), 10)
            .await
            .expect("due");
        assert_eq!(next.len(), 1);
        assert!(next[0].id > head[0].id);
        assert_eq!(
            store.webhook(id).await.expect("endpoint").failing_since,
            None
        );
        store
            .record_attempt(next[0].id, &AttemptResult::Gone { code: 410 }, retry_at)
            .await
            .expect("gone");
        let endpoint = store.webhook(id).await.expect("endpoint");
        assert!(!endpoint.enabled);
        assert!(endpoint.disabled_reason.expect("why").contains("410"));
        assert!(
            store
                .due_deliveries(retry_at, &HashSet::new(), 10)
                .await
                .expect("due")
                .is_empty()
        );
        let stats = store.outbox_stats().await.expect("stats");
        assert_eq!((stats.failed, stats.pending), (1, 1));
        // Delivered messages are forgotten after a while; failed ones stay.
        assert_eq!(
            store
                .prune_delivered(Utc::now() + Duration::days(1))
                .await
                .expect("prune"),
            1
        );
        assert_eq!(store.outbox_stats().await.expect("stats").failed, 1);
        // Replaying the failed one queues it again, ahead of the one still pending.
        assert_eq!(store.replay_failed(Some(id)).await.expect("replay"), 1);
        store
            .set_webhook_enabled(id, true, None)
            .await
            .expect("enable");
        let again = store
            .due_deliveries(Utc::now(), &HashSet::new(), 10)
            .await
            .expect("due");
        assert_eq!(again.iter().map(|d| d.id).collect::<Vec<_>>(), [next[0].id]);
        assert_eq!(again[0].attempts, 0);
        assert_eq!(again[0].msg_id, next[0].msg_id);
    }

    #[tokio::test]
    async fn an_endpoint_turned_off_keeps_its_messages_for_when_it_is_on_again() {
        let (_tmp, store, a, id) = one_account_one_endpoint().await;
        store
            .set_webhook_enabled(id, false, Some("paused by the operator"))
            .await
            .expect("disable");
        let at = Utc::now();
        record(&store, a.id, State::Connecting, at).await;
        store
            .enqueue_webhook_message(
                "alert",
                "alert.down",
                Some(a.id),
                &serde_json::json!({}),
                at,
            )
            .await
            .expect("alert");
        assert_eq!(store.outbox_stats().await.expect("stats").pending, 2);
        let none = HashSet::new();
        let later = at + chrono::Duration::hours(1);
        assert!(
            store
                .due_deliveries(later, &none, 10)
                .await
                .expect("due")
                .is_empty(),
            "nothing is sent while it is off"
        );
        store
            .set_webhook_enabled(id, true, None)
            .await
            .expect("enable");
        let due = store.due_deliveries(later, &none, 10).await.expect("due");
        assert_eq!(
            due.iter().map(|d| d.endpoint_id).collect::<Vec<_>>(),
            [id],
            "the account's queue head first"
        );
        assert_eq!(due[0].kind, "account.state_changed");

        // A removed endpoint gets nothing.
        store.remove_webhook(id).await.expect("remove");
        record(&store, a.id, State::Stopped { reason: None }, later).await;
        assert_eq!(store.outbox_stats().await.expect("stats").pending, 0);
        let err = store.add_webhook(NewWebhook {
            url: WebhookUrl::parse("http://127.0.0.1:9/").expect("url"),
            events: None,
            accounts: Some(vec![AccountId(77)]),
            secret_name: SecretName::parse("w").expect("name"),
        });
        assert!(err.await.expect_err("unknown account").is_input());
    }
}
