//! What SQLite claims, and when it next could: the same rule as the PostgreSQL statements
//! (`CLAIM` and `NEXT_DUE` in `postgres.rs`), in steps of small indexed reads inside the
//! caller's transaction, each cheap in process.
//!
//! The targets with unfinished deliveries are found by a loose scan of
//! `deliveries_due_by_target` (one descent per target, with its earliest due time), so that
//! no claim walks the backlog of a target it does not serve. Deleted, disabled and skipped
//! targets are left out; an ordered target offers only its first delivery in its sequence,
//! and only while none of its deliveries is in flight. A claim that meets a deleted or
//! disabled target's due deliveries cancels those no live lease holds.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use webhook_domain::{CancelReason, Webhook};
use webhook_ports::ClaimRequest;

use crate::rows::{AdapterError, DeliveryRow, WebhookRow, micros, row_to_webhook};
use crate::schema::{deliveries, webhooks};
use crate::sql_id::{sql_id, sql_ids};

/// A delivery row with its wallet, which finds its event (event ids are unique per wallet).
pub(super) type CandidateRow = (DeliveryRow, String);

/// A target with unfinished deliveries that a claim may serve.
struct Served {
    webhook: Webhook,
    /// Its earliest due time, microseconds.
    earliest: i64,
}

/// The first target after `$after` (an id text; ids are never empty) with unfinished
/// deliveries, and its earliest due time: one step of the loose scan.
macro_rules! next_target {
    ($after:expr) => {
        deliveries::table
            .filter(deliveries::due_at.is_not_null())
            .filter(deliveries::webhook_id.gt(sql_id($after)))
            .order((deliveries::webhook_id, deliveries::due_at))
            .select((deliveries::webhook_id, deliveries::due_at))
            .limit(1)
    };
}

/// The first unfinished delivery of the ordered target `$webhook` in its sequence.
macro_rules! ordered_head {
    ($webhook:expr) => {
        deliveries::table
            .filter(deliveries::webhook_id.eq(sql_id($webhook)))
            .filter(deliveries::due_at.is_not_null())
            .filter(deliveries::seq.is_not_null())
            .order(deliveries::seq)
            .select((crate::rows::delivery_select!(), deliveries::wallet_id))
            .limit(1)
    };
}

/// Up to `$limit` deliveries of the unordered target `$webhook` due at `$now`, earliest first.
macro_rules! due_of_target {
    ($webhook:expr, $now:expr, $limit:expr) => {
        deliveries::table
            .filter(deliveries::webhook_id.eq(sql_id($webhook)))
            .filter(deliveries::due_at.le($now))
            .order(deliveries::due_at)
            .limit($limit)
            .select((crate::rows::delivery_select!(), deliveries::wallet_id))
    };
}

/// Every target with unfinished deliveries and its earliest due time, in id order.
fn targets(c: &mut SqliteConnection) -> Result<Vec<(String, i64)>, AdapterError> {
    let mut found = Vec::new();
    let mut after = String::new();
    loop {
        let next: Option<(String, Option<i64>)> =
            next_target!(after.clone()).first(c).optional()?;
        let Some((webhook, Some(earliest))) = next else {
            return Ok(found);
        };
        after.clone_from(&webhook);
        found.push((webhook, earliest));
    }
}

/// The live, enabled targets among `targets` that are not in `skip`, by id.
fn live(
    c: &mut SqliteConnection,
    targets: &[(String, i64)],
    skip: &[String],
) -> Result<HashMap<String, Webhook>, AdapterError> {
    let ids: Vec<&str> = targets
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| !skip.iter().any(|s| s == id))
        .collect();
    let rows: Vec<WebhookRow> = webhooks::table
        .filter(webhooks::id.eq_any(sql_ids(&ids)))
        .filter(webhooks::enabled.eq(true))
        .filter(webhooks::deleted_at.is_null())
        .select(crate::rows::webhook_select!())
        .load(c)?;
    rows.into_iter()
        .map(|row| row_to_webhook(row).map(|w| (w.id.to_string(), w)))
        .collect()
}

/// Cancels the unfinished deliveries of the deleted or disabled targets among `targets` that
/// no live lease holds: deliveries left behind by an instance that died holding them, or
/// recorded or released by their holder after the change.
fn sweep_dead_targets(
    c: &mut SqliteConnection,
    targets: &[(String, i64)],
    now: time::OffsetDateTime,
) -> Result<(), AdapterError> {
    let ids: Vec<&str> = targets.iter().map(|(id, _)| id.as_str()).collect();
    let dead: Vec<(String, Option<i64>)> = webhooks::table
        .filter(webhooks::id.eq_any(sql_ids(&ids)))
        .filter(
            webhooks::deleted_at
                .is_not_null()
                .or(webhooks::enabled.eq(false)),
        )
        .select((webhooks::id, webhooks::deleted_at))
        .load(c)?;
    for (webhook, deleted_at) in dead {
        let reason = if deleted_at.is_some() {
            CancelReason::TargetDeleted
        } else {
            CancelReason::TargetDisabled
        };
        crate::queries::cancel_unleased!(&webhook, reason, now).execute(c)?;
    }
    Ok(())
}

/// The first unfinished delivery of the ordered target `webhook` in its sequence.
fn ordered_head(
    c: &mut SqliteConnection,
    webhook: &str,
) -> Result<Option<CandidateRow>, AdapterError> {
    Ok(ordered_head!(webhook).first(c).optional()?)
}

/// The latest end of a lease live at `now` among the deliveries of `webhook` in flight. For an
/// ordered target only its first delivery (or one requeued before it) has a due time after
/// now, so this reads a row or two.
fn in_flight_until(
    c: &mut SqliteConnection,
    webhook: &str,
    now: i64,
) -> Result<Option<i64>, AdapterError> {
    Ok(crate::queries::leased_until!(webhook, now).first(c)?)
}

fn due_of(row: &CandidateRow) -> i64 {
    row.0.4.unwrap_or(i64::MAX)
}

/// The deliveries a claim takes, earliest due first (then by id), with their wallets.
pub(super) fn candidates(
    c: &mut SqliteConnection,
    request: &ClaimRequest,
) -> Result<Vec<CandidateRow>, AdapterError> {
    let now = micros(request.now);
    let limit = request.limit as usize;
    let skip: Vec<String> = request.skip.iter().map(ToString::to_string).collect();
    let targets: Vec<(String, i64)> = targets(c)?
        .into_iter()
        .filter(|(_, earliest)| *earliest <= now)
        .collect();
    sweep_dead_targets(c, &targets, request.now)?;
    let live = live(c, &targets, &skip)?;
    let mut served: Vec<(Served, Option<CandidateRow>)> = Vec::new();
    for (id, earliest) in targets {
        let Some(webhook) = live.get(&id) else {
            continue;
        };
        let head = if webhook.ordered {
            match ordered_head(c, &id)? {
                Some(head) if due_of(&head) <= now && in_flight_until(c, &id, now)?.is_none() => {
                    Some(head)
                }
                _ => continue,
            }
        } else {
            None
        };
        let webhook = webhook.clone();
        served.push((Served { webhook, earliest }, head));
    }
    served.sort_by_key(|(s, _)| s.earliest);
    served.truncate(limit);
    let mut taken: Vec<CandidateRow> = Vec::new();
    for (target, head) in served {
        match head {
            Some(head) => taken.push(head),
            None => taken.extend(
                due_of_target!(
                    target.webhook.id.to_string(),
                    now,
                    i64::from(request.per_target.max(1))
                )
                .load::<CandidateRow>(c)?,
            ),
        }
    }
    taken.sort_by(|a, b| due_of(a).cmp(&due_of(b)).then_with(|| a.0.0.cmp(&b.0.0)));
    taken.truncate(limit);
    Ok(taken)
}

/// The earliest time a claim at `now` skipping `skip` could lease something: over the live,
/// enabled targets not skipped, an unordered target's earliest due time, and an ordered
/// target's first delivery's, or the end of the lease in flight if that is later.
pub(super) fn next_due(
    c: &mut SqliteConnection,
    now: i64,
    skip: &[String],
) -> Result<Option<i64>, AdapterError> {
    let targets = targets(c)?;
    let live = live(c, &targets, skip)?;
    let mut next: Option<i64> = None;
    for (id, earliest) in targets {
        let Some(webhook) = live.get(&id) else {
            continue;
        };
        let at = if webhook.ordered {
            let Some(head) = ordered_head(c, &id)? else {
                continue;
            };
            due_of(&head).max(in_flight_until(c, &id, now)?.unwrap_or(i64::MIN))
        } else {
            earliest
        };
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    Ok(next)
}

/// The plans SQLite chooses for each step of a claim, as (name, plan) pairs.
#[cfg(feature = "testing")]
pub(super) fn explain(
    c: &mut SqliteConnection,
    webhook: &str,
    now: i64,
) -> Result<Vec<(String, String)>, AdapterError> {
    use super::plan;
    Ok(vec![
        (
            "claim: next target".to_owned(),
            plan(c, next_target!(webhook.to_owned()))?,
        ),
        (
            "claim: ordered head".to_owned(),
            plan(c, ordered_head!(webhook))?,
        ),
        (
            "claim: in flight".to_owned(),
            plan(c, crate::queries::leased_until!(webhook, now))?,
        ),
        (
            "claim: due of target".to_owned(),
            plan(c, due_of_target!(webhook, now, 32_i64))?,
        ),
    ])
}
