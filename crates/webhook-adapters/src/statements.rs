//! The statements both SQL backends run alike, written once. diesel's query DSL is the same
//! for SQLite's synchronous connection and for diesel-async's PostgreSQL connection; only the
//! call differs, since one is awaited and the other is not. So each statement is a function in
//! [`shared_statements!`], which each backend expands once, in a module of its own, for its
//! connection and the crate of its `RunQueryDsl`: `shared_statements!(AsyncPgConnection,
//! diesel_async; [async]; [.await])` for PostgreSQL, `shared_statements!(SqliteConnection,
//! diesel; []; [])` for SQLite. A third backend gets them all with one such line.
//!
//! A statement goes here only when both backends mean it to the letter. Writes that lock rows
//! (PostgreSQL's `FOR UPDATE` and `FOR SHARE`, where SQLite has one writer) and statements
//! planned for one backend's indexes stay in that backend's module.

/// The shared statements, as functions of a connection `$conn` run with `$run::RunQueryDsl`;
/// `$($async)?` makes them `async` and `$($await)*` awaits each run, for a connection that
/// needs it.
macro_rules! shared_statements {
    ($conn:ty, $run:ident; [$($async:tt)?]; [$($await:tt)*]) => {
        use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
        use $run::RunQueryDsl;

        /// The wallet `id`.
        pub(crate) $($async)? fn wallet(
            c: &mut $conn,
            id: webhook_domain::WalletId,
        ) -> Result<webhook_domain::Wallet, $crate::rows::AdapterError> {
            use $crate::schema::wallets;
            let row: (String, String, i64, i64) = wallets::table
                .find($crate::sql_id::sql_id(id))
                .first(c)
                $($await)*
                .optional()?
                .ok_or($crate::rows::AdapterError::NotFound)?;
            $crate::rows::to_wallet(row)
        }

        /// A page of the wallets, oldest first.
        pub(crate) $($async)? fn wallets_page(
            c: &mut $conn,
            page: webhook_ports::Page,
        ) -> Result<Vec<webhook_domain::Wallet>, $crate::rows::AdapterError> {
            use $crate::schema::wallets;
            let rows: Vec<(String, String, i64, i64)> = wallets::table
                .order((wallets::created_at, wallets::id))
                .offset($crate::rows::offset(page))
                .limit(i64::from(page.limit))
                .load(c)
                $($await)*?;
            rows.into_iter().map($crate::rows::to_wallet).collect()
        }

        /// The API keys whose tag is `tag`.
        pub(crate) $($async)? fn api_keys_tagged(
            c: &mut $conn,
            tag: webhook_domain::ApiKeyTag,
        ) -> Result<Vec<webhook_ports::StoredApiKey>, $crate::rows::AdapterError> {
            use $crate::schema::api_keys;
            let rows: Vec<$crate::rows::ApiKeyRow> = api_keys::table
                .filter(api_keys::tag.eq(tag.0.as_slice()))
                .select((
                    api_keys::wallet_id,
                    api_keys::salt,
                    api_keys::digest,
                    api_keys::created_at,
                ))
                .load(c)
                $($await)*?;
            rows.into_iter()
                .map(|row| $crate::rows::row_to_api_key(tag, row))
                .collect()
        }

        /// The entity `id`.
        pub(crate) $($async)? fn entity(
            c: &mut $conn,
            id: webhook_domain::EntityId,
        ) -> Result<webhook_domain::Entity, $crate::rows::AdapterError> {
            use $crate::schema::entities;
            entities::table
                .find($crate::sql_id::sql_id(id))
                .select($crate::rows::EntityRow::as_select())
                .first(c)
                $($await)*
                .optional()?
                .ok_or($crate::rows::AdapterError::NotFound)?
                .into_entity()
        }

        /// The admin token's hash, once it is set.
        pub(crate) $($async)? fn admin_token(
            c: &mut $conn,
        ) -> Result<Option<webhook_domain::ApiKeyHash>, $crate::rows::AdapterError> {
            use $crate::schema::admin_token;
            let row: Option<$crate::rows::AdminTokenRow> = admin_token::table
                .select($crate::rows::admin_token_select!())
                .first(c)
                $($await)*
                .optional()?;
            row.map($crate::rows::row_to_admin_token).transpose()
        }

        /// The wallet's webhook `id`, unless deleted.
        pub(crate) $($async)? fn webhook(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            id: webhook_domain::WebhookId,
        ) -> Result<webhook_domain::Webhook, $crate::rows::AdapterError> {
            use $crate::schema::webhooks;
            let row: $crate::rows::WebhookRow = webhooks::table
                .filter(webhooks::id.eq($crate::sql_id::sql_id(id)))
                .filter(webhooks::wallet_id.eq($crate::sql_id::sql_id(wallet)))
                .filter(webhooks::deleted_at.is_null())
                .select($crate::rows::webhook_select!())
                .first(c)
                $($await)*
                .optional()?
                .ok_or($crate::rows::AdapterError::NotFound)?;
            $crate::rows::row_to_webhook(row)
        }

        /// A page of the wallet's webhooks that are not deleted, oldest first.
        pub(crate) $($async)? fn webhooks_page(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            page: webhook_ports::Page,
        ) -> Result<Vec<webhook_domain::Webhook>, $crate::rows::AdapterError> {
            use $crate::schema::webhooks;
            let rows: Vec<$crate::rows::WebhookRow> = webhooks::table
                .filter(webhooks::wallet_id.eq($crate::sql_id::sql_id(wallet)))
                .filter(webhooks::deleted_at.is_null())
                .order((webhooks::created_at, webhooks::id))
                .offset($crate::rows::offset(page))
                .limit(i64::from(page.limit))
                .select($crate::rows::webhook_select!())
                .load(c)
                $($await)*?;
            rows.into_iter().map($crate::rows::row_to_webhook).collect()
        }

        /// The wallet's event `id`.
        pub(crate) $($async)? fn event(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            id: webhook_domain::EventId,
        ) -> Result<webhook_domain::Event, $crate::rows::AdapterError> {
            use $crate::schema::events;
            let row: $crate::rows::EventRow = events::table
                .filter(events::id.eq($crate::sql_id::sql_id(id)))
                .filter(events::wallet_id.eq($crate::sql_id::sql_id(wallet)))
                .select($crate::rows::event_select!())
                .first(c)
                $($await)*
                .optional()?
                .ok_or($crate::rows::AdapterError::NotFound)?;
            $crate::rows::row_to_event(row)
        }

        /// The wallet's delivery `id`.
        pub(crate) $($async)? fn delivery(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            id: webhook_domain::DeliveryId,
        ) -> Result<webhook_domain::Delivery, $crate::rows::AdapterError> {
            use $crate::schema::deliveries;
            let row: $crate::rows::DeliveryRow = deliveries::table
                .filter(deliveries::id.eq($crate::sql_id::sql_id(id)))
                .filter(deliveries::wallet_id.eq($crate::sql_id::sql_id(wallet)))
                .select($crate::rows::delivery_select!())
                .first(c)
                $($await)*
                .optional()?
                .ok_or($crate::rows::AdapterError::NotFound)?;
            $crate::rows::row_to_delivery(&row)
        }

        /// A page of the wallet's deliveries matching `filter`, oldest first.
        pub(crate) $($async)? fn deliveries_page(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            filter: &webhook_ports::DeliveryFilter,
            page: webhook_ports::Page,
        ) -> Result<Vec<webhook_domain::Delivery>, $crate::rows::AdapterError> {
            use $crate::rows::delivery_select;
            use $crate::schema::deliveries;
            let rows: Vec<$crate::rows::DeliveryRow> =
                $crate::queries::deliveries_listing!(wallet, filter, page)
                    .load(c)
                    $($await)*?;
            rows.iter().map($crate::rows::row_to_delivery).collect()
        }

        /// The part `range` of the wallet's deliveries matching `search`, at most `limit`,
        /// newest first, with their creation times.
        pub(crate) $($async)? fn search_range(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            search: &webhook_ports::DeliverySearch,
            range: $crate::queries::SearchRange,
            limit: u32,
        ) -> Result<Vec<$crate::rows::SearchRow>, $crate::rows::AdapterError> {
            use $crate::rows::delivery_select;
            use $crate::schema::{deliveries, events};
            Ok(match &search.event_type {
                Some(kind) => {
                    $crate::queries::deliveries_search_by_type!(wallet, search, kind, range, limit)
                        .load(c)
                        $($await)*?
                }
                None => $crate::queries::deliveries_search!(wallet, search, range, limit)
                    .load(c)
                    $($await)*?,
            })
        }

        /// A page of the wallet's deliveries matching `search`, newest first, with their
        /// events' types: after a cursor, the rows sharing its creation time, then those
        /// before it for what is missing (two index ranges).
        #[allow(
            dead_code,
            reason = "MySQL reads its ranges through a named index: its own search_deliveries"
        )]
        pub(crate) $($async)? fn search_deliveries(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            search: &webhook_ports::DeliverySearch,
        ) -> Result<Vec<webhook_ports::FoundDelivery>, $crate::rows::AdapterError> {
            use $crate::queries::SearchRange;
            use $crate::schema::events;
            let limit = search.limit;
            let mut rows = match search.after {
                None => search_range(c, wallet, search, SearchRange::All, limit)$($await)*?,
                Some(after) => {
                    search_range(c, wallet, search, SearchRange::TiesAfter(after), limit)
                        $($await)*?
                }
            };
            if let Some(after) = search.after {
                let missing = limit.saturating_sub(u32::try_from(rows.len()).unwrap_or(u32::MAX));
                if missing > 0 {
                    let before = SearchRange::Before(after.created_at);
                    rows.extend(search_range(c, wallet, search, before, missing)$($await)*?);
                }
            }
            if let Some(kind) = &search.event_type {
                return $crate::rows::rows_to_found(rows, |_| Some(kind.clone()));
            }
            let mut ids: Vec<&str> = rows.iter().map(|(row, _)| row.1.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let types: Vec<(String, String)> = $crate::queries::event_types_of_page!(wallet, &ids)
                .load(c)
                $($await)*?;
            let types = $crate::rows::event_types(types)?;
            $crate::rows::rows_to_found(rows, |event| types.get(event).cloned())
        }

        /// The attempts to the wallet's webhook `target` per bucket of `window`, by
        /// `stats_sql` (the backend's spelling of [`crate::queries::stats_sql`]), and its
        /// backlog; `NotFound` when the wallet has no such webhook (deleted ones included).
        pub(crate) $($async)? fn webhook_stats(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            target: webhook_domain::WebhookId,
            window: &webhook_ports::StatsWindow,
            stats_sql: &str,
        ) -> Result<webhook_ports::WebhookStats, $crate::rows::AdapterError> {
            use $crate::schema::deliveries;
            webhook(c, wallet, target)$($await)*?;
            let id = target.to_string();
            let rows: Vec<$crate::queries::StatsRow> =
                $crate::queries::bind_stats!(diesel::sql_query(stats_sql), &id, window)
                    .load(c)
                    $($await)*?;
            let backlog: i64 = $crate::queries::webhook_backlog!(&id)
                .get_result(c)
                $($await)*?;
            Ok(webhook_ports::WebhookStats {
                buckets: $crate::queries::stats_buckets(rows, window)?,
                backlog: u64::try_from(backlog).map_err($crate::rows::AdapterError::corrupt)?,
            })
        }

        /// Counts over every wallet, and the global webhook.
        pub(crate) $($async)? fn overview(
            c: &mut $conn,
            attempts_since: time::OffsetDateTime,
        ) -> Result<webhook_ports::Overview, $crate::rows::AdapterError> {
            use $crate::schema::{attempts, wallets, webhooks};
            let count = |n: i64| u64::try_from(n).map_err($crate::rows::AdapterError::corrupt);
            let wallet_count: i64 = wallets::table.count().get_result(c)$($await)*?;
            let webhook_count: i64 = webhooks::table
                .filter(webhooks::deleted_at.is_null())
                .count()
                .get_result(c)
                $($await)*?;
            let recent: i64 = attempts::table
                .filter(attempts::started_at.ge($crate::rows::micros(attempts_since)))
                .count()
                .get_result(c)
                $($await)*?;
            let global: Option<$crate::rows::WebhookRow> = webhooks::table
                .filter(webhooks::wallet_id.is_null())
                .filter(webhooks::deleted_at.is_null())
                .select($crate::rows::webhook_select!())
                .first(c)
                $($await)*
                .optional()?;
            Ok(webhook_ports::Overview {
                wallets: count(wallet_count)?,
                webhooks: count(webhook_count)?,
                recent_attempts: count(recent)?,
                global_webhook: global.map($crate::rows::row_to_webhook).transpose()?,
            })
        }

        /// Every attempt of the wallet's delivery `id`, in order; `NotFound` when the wallet
        /// has no such delivery.
        pub(crate) $($async)? fn attempts_of(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            delivery: webhook_domain::DeliveryId,
        ) -> Result<Vec<webhook_ports::AttemptLog>, $crate::rows::AdapterError> {
            use $crate::schema::{attempts, deliveries};
            let id = delivery.to_string();
            let owned: i64 = deliveries::table
                .filter(deliveries::id.eq($crate::sql_id::sql_id(&id)))
                .filter(deliveries::wallet_id.eq($crate::sql_id::sql_id(wallet)))
                .count()
                .get_result(c)
                $($await)*?;
            if owned == 0 {
                return Err($crate::rows::AdapterError::NotFound);
            }
            let rows: Vec<$crate::rows::AttemptRow> = attempts::table
                .filter(attempts::delivery_id.eq($crate::sql_id::sql_id(&id)))
                .order(attempts::id)
                .select($crate::rows::attempt_select!())
                .load(c)
                $($await)*?;
            rows.into_iter().map($crate::rows::row_to_attempt).collect()
        }

        /// The wallet's bulk redelivery job `id`.
        pub(crate) $($async)? fn redelivery_job(
            c: &mut $conn,
            wallet: webhook_domain::WalletId,
            id: webhook_domain::RedeliveryJobId,
        ) -> Result<webhook_domain::RedeliveryJob, $crate::rows::AdapterError> {
            use $crate::schema::redelivery_jobs;
            redelivery_jobs::table
                .filter(redelivery_jobs::id.eq($crate::sql_id::sql_id(id)))
                .filter(redelivery_jobs::wallet_id.eq($crate::sql_id::sql_id(wallet)))
                .select($crate::rows::RedeliveryJobRow::as_select())
                .first(c)
                $($await)*
                .optional()?
                .ok_or($crate::rows::AdapterError::NotFound)?
                .into_job()
        }

        /// Every running bulk redelivery job, oldest first.
        pub(crate) $($async)? fn running_redelivery_jobs(
            c: &mut $conn,
        ) -> Result<Vec<webhook_domain::RedeliveryJob>, $crate::rows::AdapterError> {
            use $crate::schema::redelivery_jobs;
            let rows: Vec<$crate::rows::RedeliveryJobRow> = redelivery_jobs::table
                .filter(redelivery_jobs::state.eq(webhook_domain::JobState::Running.as_str()))
                .order((redelivery_jobs::created_at, redelivery_jobs::id))
                .select($crate::rows::RedeliveryJobRow::as_select())
                .load(c)
                $($await)*?;
            rows.into_iter()
                .map($crate::rows::RedeliveryJobRow::into_job)
                .collect()
        }

        /// The deliveries due at `now` and the earliest due time among them.
        pub(crate) $($async)? fn backlog(
            c: &mut $conn,
            now: time::OffsetDateTime,
        ) -> Result<webhook_ports::Backlog, $crate::rows::AdapterError> {
            use $crate::schema::deliveries;
            let row: (i64, Option<i64>) = $crate::queries::backlog!($crate::rows::micros(now))
                .get_result(c)
                $($await)*?;
            $crate::rows::to_backlog(row)
        }

        /// The first publish of this event id or idempotency key in the event's wallet, if
        /// any, as a replay; `Conflict` when the key was used with another request.
        pub(crate) $($async)? fn earlier_publish(
            c: &mut $conn,
            event: &webhook_domain::Event,
            idempotency: Option<&webhook_ports::Idempotency>,
        ) -> Result<Option<webhook_ports::Published>, $crate::rows::AdapterError> {
            use $crate::rows::event_summary;
            use $crate::schema::events;
            let by_key: Option<$crate::rows::EventSummary> = match idempotency {
                Some(idem) => events::table
                    .filter(events::wallet_id.eq($crate::sql_id::sql_id(event.wallet_id())))
                    .filter(events::idempotency_key.eq(&idem.key))
                    .select(event_summary!())
                    .first(c)
                    $($await)*
                    .optional()?,
                None => None,
            };
            let found_by_key = by_key.is_some();
            let earlier = match by_key {
                Some(found) => Some(found),
                None => events::table
                    .find(($crate::sql_id::sql_id(event.wallet_id()), $crate::sql_id::sql_id(event.id())))
                    .select(event_summary!())
                    .first(c)
                    $($await)*
                    .optional()?,
            };
            earlier
                .map(|earlier| $crate::rows::replay(idempotency, found_by_key, earlier))
                .transpose()
        }
    };
}
pub(crate) use shared_statements;
