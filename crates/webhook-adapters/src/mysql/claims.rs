//! What MySQL claims, and when it next could: the same rule as PostgreSQL's claim statement
//! and SQLite's `claims`, in steps of small indexed reads inside the caller's transaction.
//!
//! The targets with unfinished deliveries are found by a loose scan of
//! `deliveries_unfinished_by_target` (one descent per target, with its earliest due time), so
//! that no claim walks the backlog of a target it does not serve, nor any finished row: the
//! index begins with the generated column `unfinished`, MySQL's stand-in for the partial
//! indexes of the other backends, which the schema module does not know ([`UNFINISHED`]). Deleted, disabled and skipped
//! targets are left out; an ordered target offers only its first delivery in its sequence,
//! and only while none of its deliveries is in flight. A claim that meets a deleted or disabled
//! target's due deliveries cancels those no live lease holds.
//!
//! Several instances claim at once: the rows taken are read with `FOR UPDATE SKIP LOCKED`
//! (MySQL 8, MariaDB 10.6), which reads the latest committed version of each row and passes
//! over rows another claimer holds, so two claimers never take one row and never wait for each
//! other. An ordered target's first row is locked only after it was chosen, and re-checked as
//! due: when another claimer holds it or has just leased it, the target gives nothing, never
//! the row after it.

use std::collections::HashMap;

use diesel::{BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use webhook_domain::{CancelReason, Webhook};
use webhook_ports::ClaimRequest;

use crate::rows::{AdapterError, DeliveryRow, WebhookRow, micros, row_to_webhook};
use crate::schema::{deliveries, webhooks};
use crate::sql_id::{sql_id, sql_ids};

type Conn = AsyncMysqlConnection;

/// The condition that keeps only unfinished deliveries, on the invisible generated column
/// that the indexes of the claims begin with (the migration's `unfinished`, `due_at IS NOT
/// NULL`). An equality, so that the planner reads the index's next columns in order.
const UNFINISHED: &str = "deliveries.unfinished = TRUE";

/// `deliveries.unfinished = TRUE` as a diesel filter.
fn unfinished() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql::<diesel::sql_types::Bool>(UNFINISHED)
}

/// A delivery row with its wallet, which finds its event (event ids are unique per wallet).
pub(super) type CandidateRow = (DeliveryRow, String);

/// The first target after `$after` (an id text; ids are never empty) with unfinished
/// deliveries, and its earliest due time: one step of the loose scan.
macro_rules! next_target {
    ($after:expr) => {
        deliveries::table
            .filter(unfinished())
            .filter(deliveries::webhook_id.gt(sql_id($after)))
            .filter(deliveries::due_at.is_not_null())
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
            .filter(unfinished())
            .filter(deliveries::seq.is_not_null())
            .filter(deliveries::due_at.is_not_null())
            .order(deliveries::seq)
            .select((crate::rows::delivery_select!(), deliveries::wallet_id))
            .limit(1)
    };
}

/// Up to `$limit` deliveries of the unordered target `$webhook` due at `$now`, earliest first,
/// locked, passing over rows another transaction holds.
macro_rules! due_of_target {
    ($webhook:expr, $now:expr, $limit:expr) => {
        deliveries::table
            .filter(deliveries::webhook_id.eq(sql_id($webhook)))
            .filter(deliveries::due_at.le($now))
            .order(deliveries::due_at)
            .limit($limit)
            .select((crate::rows::delivery_select!(), deliveries::wallet_id))
            .for_update()
            .skip_locked()
    };
}

/// Every target with unfinished deliveries and its earliest due time, in id order.
async fn targets(c: &mut Conn) -> Result<Vec<(String, i64)>, AdapterError> {
    let mut found = Vec::new();
    let mut after = String::new();
    loop {
        let next: Option<(String, Option<i64>)> =
            next_target!(after.clone()).first(c).await.optional()?;
        let Some((webhook, Some(earliest))) = next else {
            return Ok(found);
        };
        after.clone_from(&webhook);
        found.push((webhook, earliest));
    }
}

/// The live, enabled targets among `targets` that are not in `skip`, by id.
async fn live(
    c: &mut Conn,
    targets: &[(String, i64)],
    skip: &[String],
) -> Result<HashMap<String, Webhook>, AdapterError> {
    let ids: Vec<&str> = targets
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| !skip.iter().any(|s| s == id))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<WebhookRow> = webhooks::table
        .filter(webhooks::id.eq_any(sql_ids(&ids)))
        .filter(webhooks::enabled.eq(true))
        .filter(webhooks::deleted_at.is_null())
        .select(crate::rows::webhook_select!())
        .load(c)
        .await?;
    rows.into_iter()
        .map(|row| row_to_webhook(row).map(|w| (w.id.to_string(), w)))
        .collect()
}

/// Cancels the unfinished deliveries of the deleted or disabled targets among `targets` that
/// no live lease holds: deliveries left behind by an instance that died holding them, or
/// recorded or released by their holder after the change.
async fn sweep_dead_targets(
    c: &mut Conn,
    targets: &[(String, i64)],
    now: time::OffsetDateTime,
) -> Result<(), AdapterError> {
    if targets.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = targets.iter().map(|(id, _)| id.as_str()).collect();
    let dead: Vec<(String, Option<i64>)> = webhooks::table
        .filter(webhooks::id.eq_any(sql_ids(&ids)))
        .filter(
            webhooks::deleted_at
                .is_not_null()
                .or(webhooks::enabled.eq(false)),
        )
        .select((webhooks::id, webhooks::deleted_at))
        .load(c)
        .await?;
    for (webhook, deleted_at) in dead {
        let reason = if deleted_at.is_some() {
            CancelReason::TargetDeleted
        } else {
            CancelReason::TargetDisabled
        };
        super::cancel_deliveries_of(c, &webhook, reason, now).await?;
    }
    Ok(())
}

/// The first unfinished delivery of the ordered target `webhook` in its sequence.
async fn ordered_head(c: &mut Conn, webhook: &str) -> Result<Option<CandidateRow>, AdapterError> {
    Ok(ordered_head!(webhook).first(c).await.optional()?)
}

/// The latest end of a lease live at `now` among the deliveries of `webhook` in flight.
async fn in_flight_until(
    c: &mut Conn,
    webhook: &str,
    now: i64,
) -> Result<Option<i64>, AdapterError> {
    Ok(crate::queries::leased_until!(webhook, now).first(c).await?)
}

/// The ordered target's first row `head`, locked, if it is still due at `now` and no other
/// transaction holds it.
async fn lock_head(
    c: &mut Conn,
    head: &CandidateRow,
    now: i64,
) -> Result<Option<CandidateRow>, AdapterError> {
    Ok(deliveries::table
        .filter(deliveries::id.eq(sql_id(&head.0.0)))
        .filter(deliveries::due_at.le(now))
        .select((crate::rows::delivery_select!(), deliveries::wallet_id))
        .for_update()
        .skip_locked()
        .first(c)
        .await
        .optional()?)
}

fn due_of(row: &CandidateRow) -> i64 {
    row.0.4.unwrap_or(i64::MAX)
}

/// The deliveries a claim takes, locked, earliest due first (then by id), with their wallets.
pub(super) async fn candidates(
    c: &mut Conn,
    request: &ClaimRequest,
) -> Result<Vec<CandidateRow>, AdapterError> {
    let now = micros(request.now);
    let limit = request.limit as usize;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let skip: Vec<String> = request.skip.iter().map(ToString::to_string).collect();
    let targets: Vec<(String, i64)> = targets(c)
        .await?
        .into_iter()
        .filter(|(_, earliest)| *earliest <= now)
        .collect();
    sweep_dead_targets(c, &targets, request.now).await?;
    let live = live(c, &targets, &skip).await?;
    // (earliest due time, target, its chosen first row when ordered)
    let mut served: Vec<(i64, Webhook, Option<CandidateRow>)> = Vec::new();
    for (id, earliest) in targets {
        let Some(webhook) = live.get(&id) else {
            continue;
        };
        let head = if webhook.ordered {
            match ordered_head(c, &id).await? {
                Some(head)
                    if due_of(&head) <= now && in_flight_until(c, &id, now).await?.is_none() =>
                {
                    Some(head)
                }
                _ => continue,
            }
        } else {
            None
        };
        served.push((earliest, webhook.clone(), head));
    }
    served.sort_by_key(|(earliest, _, _)| *earliest);
    served.truncate(limit);
    // Each target's share of the batch, as PostgreSQL's statement gives it.
    let share = limit
        .div_ceil(served.len().max(1))
        .clamp(1, request.per_target.max(1) as usize);
    let mut taken: Vec<CandidateRow> = Vec::new();
    for (_, target, head) in served {
        match head {
            Some(head) => taken.extend(lock_head(c, &head, now).await?),
            None => taken.extend(
                due_of_target!(
                    target.id.to_string(),
                    now,
                    i64::try_from(share).unwrap_or(i64::MAX)
                )
                .load::<CandidateRow>(c)
                .await?,
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
pub(super) async fn next_due(
    c: &mut Conn,
    now: i64,
    skip: &[String],
) -> Result<Option<i64>, AdapterError> {
    let targets = targets(c).await?;
    let live = live(c, &targets, skip).await?;
    let mut next: Option<i64> = None;
    for (id, earliest) in targets {
        let Some(webhook) = live.get(&id) else {
            continue;
        };
        let at = if webhook.ordered {
            let Some(head) = ordered_head(c, &id).await? else {
                continue;
            };
            due_of(&head).max(in_flight_until(c, &id, now).await?.unwrap_or(i64::MIN))
        } else {
            earliest
        };
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    Ok(next)
}

/// The plans MySQL chooses for each step of a claim, explained with `prefix` (see
/// `plan_with`), as (name, plan) pairs.
#[cfg(feature = "testing")]
pub(super) async fn explain(
    c: &mut Conn,
    prefix: &'static str,
    webhook: &str,
    now: i64,
) -> Result<Vec<(String, String)>, AdapterError> {
    use super::plan_with;
    Ok(vec![
        (
            "claim: next target".to_owned(),
            plan_with(c, prefix, next_target!(webhook.to_owned())).await?,
        ),
        (
            "claim: ordered head".to_owned(),
            plan_with(c, prefix, ordered_head!(webhook)).await?,
        ),
        (
            "claim: in flight".to_owned(),
            plan_with(c, prefix, crate::queries::leased_until!(webhook, now)).await?,
        ),
        (
            "claim: due of target".to_owned(),
            plan_with(c, prefix, due_of_target!(webhook, now, 32_i64)).await?,
        ),
    ])
}
