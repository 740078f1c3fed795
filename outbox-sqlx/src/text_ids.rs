//! What MySQL and SQLite do alike: `?` placeholders, message ids stored as text, integers
//! decoded as `i64`. Each database module defines `INSERT_CHUNK`, `envelope` (from
//! [`text_id_envelope!`]) and `relay_conn` (the connection relay statements run on), then
//! expands [`text_id_store_fns!`] inside its `OutboxDatabase` impl.

/// Decodes the envelope columns of a row whose message id is text.
macro_rules! text_id_envelope {
    ($row:ty) => {
        fn envelope(row: &$row) -> std::result::Result<Envelope, sqlx::Error> {
            let seq: i64 = row.try_get(0)?;
            let id: String = row.try_get(1)?;
            let headers: String = row.try_get(6)?;
            Ok(Envelope {
                seq,
                id: parse_uuid(seq, &id)?,
                event_type: row.try_get(2)?,
                partition_key: row.try_get(3)?,
                aggregate_type: row.try_get(4)?,
                payload: row.try_get::<Vec<u8>, _>(5)?.into(),
                headers: decode_headers(seq, &headers)
                    .map_err(|e| sqlx::Error::Decode(e.into()))?,
                created_at: from_micros(row.try_get(7)?),
                attempts: row.try_get::<i64, _>(8)?.max(0) as u32,
            })
        }
    };
}

/// The `OutboxDatabase` functions MySQL and SQLite share.
macro_rules! text_id_store_fns {
    ($db:ty, $conn:ty) => {
        async fn insert(conn: &mut $conn, s: &Statements, messages: &[Message]) -> Result<()> {
            if let [message] = messages
                && message.delay().is_zero()
            {
                sqlx::query(AssertSqlSafe(s.insert_one.as_str()))
                    .bind(message.id().hyphenated().to_string())
                    .bind(message.event_type())
                    .bind(message.partition_key())
                    .bind(message.aggregate_type_name())
                    .bind(&message.payload()[..])
                    .bind(message.headers_json())
                    .execute(&mut *conn)
                    .await
                    .for_table(&s.table)?;
                return Ok(());
            }
            for chunk in messages.chunks(INSERT_CHUNK) {
                let mut query = sqlx::query(AssertSqlSafe(s.insert_many(chunk.len())));
                for m in chunk {
                    query = query
                        .bind(m.id().hyphenated().to_string())
                        .bind(m.event_type())
                        .bind(m.partition_key())
                        .bind(m.aggregate_type_name())
                        .bind(&m.payload()[..])
                        .bind(m.headers_json())
                        .bind(micros(m.delay()));
                }
                query.execute(&mut *conn).await.for_table(&s.table)?;
            }
            Ok(())
        }

        async fn run_script(conn: &mut $conn, s: &Statements) -> Result<()> {
            for statement in &s.create {
                sqlx::query(AssertSqlSafe(statement.as_str()))
                    .execute(&mut *conn)
                    .await
                    .map_err(outbox_core::Error::database)?;
            }
            Ok(())
        }

        async fn settle(
            pool: &Pool<$db>,
            s: &Statements,
            kind: Settle,
            token: LeaseToken,
            seqs: &[i64],
        ) -> Result<u64> {
            let mut changed = 0;
            for chunk in seqs.chunks(INSERT_CHUNK) {
                let mut query = sqlx::query(AssertSqlSafe(kind.sql(s, chunk.len()))).bind(token.0);
                for seq in chunk {
                    query = query.bind(*seq);
                }
                let mut conn = relay_conn(pool, s).await?;
                changed += query
                    .execute(&mut *conn)
                    .await
                    .for_table(&s.table)?
                    .rows_affected();
            }
            Ok(changed)
        }

        async fn fail(
            pool: &Pool<$db>,
            s: &Statements,
            token: LeaseToken,
            failures: &[Failure],
        ) -> Result<u64> {
            let mut conn = relay_conn(pool, s).await?;
            let mut tx = conn.begin().await.for_table(&s.table)?;
            let fail_one = $crate::database::row_lease(s).fail_one.as_str();
            let mut changed = 0;
            for f in failures {
                changed += sqlx::query(AssertSqlSafe(fail_one))
                    .bind(f.error.as_str())
                    .bind(i32::from(f.retry_after.is_none()))
                    .bind(f.retry_after.map_or(0, micros))
                    .bind(f.seq)
                    .bind(token.0)
                    .execute(&mut *tx)
                    .await
                    .for_table(&s.table)?
                    .rows_affected();
            }
            tx.commit().await.for_table(&s.table)?;
            Ok(changed)
        }

        async fn stats(pool: &Pool<$db>, s: &Statements) -> Result<OutboxStats> {
            let row = sqlx::query(AssertSqlSafe(s.stats.as_str()))
                .fetch_one(pool)
                .await
                .for_table(&s.table)?;
            let count = |i: usize| -> std::result::Result<u64, sqlx::Error> {
                Ok(row.try_get::<i64, _>(i)?.max(0) as u64)
            };
            let stats = (|| {
                Ok::<_, sqlx::Error>(OutboxStats {
                    pending: count(0)?,
                    claimed: count(1)?,
                    failed: count(2)?,
                    dead: count(3)?,
                    published: count(4)?,
                    oldest_unpublished_age: row
                        .try_get::<Option<i64>, _>(5)?
                        .map(|us| Duration::from_micros(us.max(0) as u64)),
                })
            })();
            stats.map_err(outbox_core::Error::database)
        }

        async fn get(pool: &Pool<$db>, s: &Statements, id: Uuid) -> Result<Option<StoredMessage>> {
            let row = sqlx::query(AssertSqlSafe(s.get.as_str()))
                .bind(id.hyphenated().to_string())
                .fetch_optional(pool)
                .await
                .for_table(&s.table)?;
            let Some(row) = row else { return Ok(None) };
            let stored = (|| {
                let envelope = envelope(&row)?;
                let state: i64 = row.try_get(9)?;
                let leased: i64 = row.try_get(10)?;
                Ok::<_, sqlx::Error>(StoredMessage {
                    status: status_of(state as i16, leased == 1, envelope.attempts as i32),
                    envelope,
                    last_error: row.try_get(11)?,
                    available_at: from_micros(row.try_get(12)?),
                })
            })();
            stored.map(Some).map_err(outbox_core::Error::database)
        }

        async fn purge_published(
            pool: &Pool<$db>,
            s: &Statements,
            older_than: Duration,
        ) -> Result<u64> {
            let done = sqlx::query(AssertSqlSafe(s.purge_published.as_str()))
                .bind(micros(older_than))
                .execute(pool)
                .await
                .for_table(&s.table)?;
            Ok(done.rows_affected())
        }

        async fn retry_dead(pool: &Pool<$db>, s: &Statements, id: Option<Uuid>) -> Result<u64> {
            let done = match id {
                Some(id) => {
                    sqlx::query(AssertSqlSafe(s.retry_dead_one.as_str()))
                        .bind(id.hyphenated().to_string())
                        .execute(pool)
                        .await
                }
                None => {
                    sqlx::query(AssertSqlSafe(s.retry_dead_all.as_str()))
                        .execute(pool)
                        .await
                }
            }
            .for_table(&s.table)?;
            Ok(done.rows_affected())
        }
    };
}

pub(crate) use {text_id_envelope, text_id_store_fns};

/// Parses a stored message id.
pub(crate) fn parse_uuid(seq: i64, text: &str) -> Result<outbox_core::Uuid, sqlx::Error> {
    outbox_core::Uuid::parse_str(text).map_err(|e| {
        sqlx::Error::Decode(
            outbox_core::Error::CorruptRow {
                seq,
                reason: format!("message_id {text:?} is not a UUID: {e}"),
            }
            .into(),
        )
    })
}
