//! The transactional outbox: one row per message, written in the caller's
//! own database transaction, relayed to the broker by [`crate::Relay`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, SqlSafeStr, SqlStr, SqliteConnection, SqlitePool};

use crate::error::Error;
use crate::message::{NewCommand, NewEvent};
use crate::time::to_millis;
use crate::tls::{explain, find_rustls_error, TlsConfig, DATABASE};

/// Row kind: an event (the relay builds the envelope with `eventId` = row id).
pub(crate) const KIND_EVENT: i16 = 0;
/// Row kind: a command (the body is stored whole).
pub(crate) const KIND_COMMAND: i16 = 1;

/// The default outbox table name.
pub const DEFAULT_TABLE: &str = "sinew_outbox";

/// A database holding an outbox: PostgreSQL, or SQLite (embedded, for a
/// single process).
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

impl Database {
    /// Connect to `postgres://…`/`postgresql://…` or `sqlite:…` (a SQLite
    /// file is created if missing, in WAL mode; `sqlite::memory:` gets a
    /// single connection, since each connection would see its own database).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with_tls(url, None).await
    }

    /// [`connect`](Self::connect), with TLS to PostgreSQL configured by
    /// `tls`: `sslmode` becomes `verify-full` (`verify-ca` when
    /// `verify_hostname = false`) whatever the URL says, with the CA file
    /// and client certificate given. A failed handshake is [`Error::Tls`]
    /// saying what did not match; `tls` with a SQLite URL is a config error.
    /// Without `tls` the URL's own `sslmode`, `sslrootcert`, `sslcert` and
    /// `sslkey` apply (sqlx's default `sslmode` is `prefer`: TLS when the
    /// server offers it, unverified).
    pub async fn connect_with_tls(url: &str, tls: Option<&TlsConfig>) -> Result<Self, Error> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut options: PgConnectOptions = url.parse()?;
            if let Some(tls) = tls {
                let loaded = tls.load(DATABASE)?;
                options = options.ssl_mode(if loaded.verify_hostname {
                    PgSslMode::VerifyFull
                } else {
                    PgSslMode::VerifyCa
                });
                if let Some((pem, _)) = loaded.ca {
                    options = options.ssl_root_cert_from_pem(pem);
                }
                if let Some(id) = loaded.client {
                    options = options
                        .ssl_client_cert_from_pem(&id.cert_pem)
                        .ssl_client_key_from_pem(&id.key_pem);
                }
            }
            let host = options.get_host().to_owned();
            let port = options.get_port();
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .map_err(|e| match (tls, find_rustls_error(&e)) {
                    (Some(tls), Some(rustls_error)) => Error::Tls {
                        target: DATABASE.target,
                        address: format!("{host}:{port}"),
                        reason: explain(rustls_error, tls, DATABASE, &host),
                    },
                    _ => Error::Database(e),
                })?;
            Ok(Self::Postgres(pool))
        } else if tls.is_some() {
            Err(Error::Config(
                "database_tls is set but database_url is not postgres://".into(),
            ))
        } else if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url.parse()?;
            let options = options
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(10));
            // An in-memory database exists once per connection: keep one.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { 4 })
                .connect_with(options)
                .await?;
            Ok(Self::Sqlite(pool))
        } else {
            Err(Error::Config(format!(
                "database URL must start with postgres:// or sqlite: (got {:?})",
                url.split(':').next().unwrap_or_default()
            )))
        }
    }

    /// Close the pool.
    pub async fn close(&self) {
        match self {
            Self::Postgres(p) => p.close().await,
            Self::Sqlite(p) => p.close().await,
        }
    }
}

/// A connection (or an open transaction, via `&mut *tx`) to write an outbox
/// row on, so the row commits or rolls back with the caller's own writes.
#[derive(Debug)]
pub enum OutboxConn<'a> {
    /// A PostgreSQL connection or transaction.
    Postgres(&'a mut PgConnection),
    /// A SQLite connection or transaction.
    Sqlite(&'a mut SqliteConnection),
}

impl<'a> From<&'a mut PgConnection> for OutboxConn<'a> {
    fn from(c: &'a mut PgConnection) -> Self {
        Self::Postgres(c)
    }
}

impl<'a> From<&'a mut SqliteConnection> for OutboxConn<'a> {
    fn from(c: &'a mut SqliteConnection) -> Self {
        Self::Sqlite(c)
    }
}

/// The SQL of one table, built once.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) table: String,
    pub(crate) insert_pg: SqlStr,
    pub(crate) insert_lite: SqlStr,
    pub(crate) claim_pg: SqlStr,
    pub(crate) claim_lite: SqlStr,
    pub(crate) delete_pg: SqlStr,
    pub(crate) delete_lite: SqlStr,
    pub(crate) next_due: SqlStr,
    pub(crate) count: SqlStr,
}

/// SQL built by `format!` around a table name: safe because [`Outbox::new`]
/// admits only plain identifiers ([`valid_table`]) and every value is a
/// bind parameter. Shared (`Arc`), so a clone per query is cheap.
pub(crate) fn trusted(sql: String) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(sql)).into_sql_str()
}

impl Sql {
    fn new(t: &str) -> Self {
        let cols = "kind, exchange, routing_key, payload, event_time_ms, send_after_ms, tags, correlation_id";
        let select =
            "SELECT id, kind, exchange, routing_key, payload, event_time_ms, correlation_id";
        Self {
            table: t.to_owned(),
            insert_pg: trusted(format!(
                "INSERT INTO {t} ({cols}) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING id"
            )),
            insert_lite: trusted(format!(
                "INSERT INTO {t} ({cols}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id"
            )),
            claim_pg: trusted(format!(
                "{select} FROM {t} WHERE send_after_ms IS NULL OR send_after_ms <= $1 \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
            )),
            claim_lite: trusted(format!(
                "{select} FROM {t} WHERE send_after_ms IS NULL OR send_after_ms <= ?1 \
                 ORDER BY id LIMIT ?2"
            )),
            delete_pg: trusted(format!("DELETE FROM {t} WHERE id = ANY($1)")),
            delete_lite: trusted(format!(
                "DELETE FROM {t} WHERE id IN (SELECT value FROM json_each(?1))"
            )),
            next_due: trusted(format!("SELECT MIN(send_after_ms) FROM {t} WHERE send_after_ms IS NOT NULL")),
            count: trusted(format!("SELECT COUNT(*) FROM {t}")),
        }
    }
}

fn valid_table(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48
}

/// An outbox table in a [`Database`].
///
/// Rows hold the exchange, the routing key, the (camelCased) payload or the
/// whole command body, `event_time`, an optional send-after time and tags.
/// Times are stored as integer milliseconds since the Unix epoch, so the
/// same table layout works on PostgreSQL and SQLite.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Database,
    sql: Arc<Sql>,
}

impl Outbox {
    /// An outbox in table `table` (a plain SQL identifier: letters, digits,
    /// `_`, at most 48 characters) of `db`.
    pub fn new(db: Database, table: &str) -> Result<Self, Error> {
        if !valid_table(table) {
            return Err(Error::Config(format!(
                "outbox table name {table:?} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 48 chars)"
            )));
        }
        Ok(Self {
            db,
            sql: Arc::new(Sql::new(table)),
        })
    }

    /// Connect to `url` (see [`Database::connect`]) and use table `table`.
    pub async fn connect(url: &str, table: &str) -> Result<Self, Error> {
        let db = Database::connect(url).await?;
        Self::new(db, table)
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.sql
    }

    /// The PostgreSQL `NOTIFY` channel the table's insert trigger signals
    /// (the table name).
    pub fn notify_channel(&self) -> &str {
        &self.sql.table
    }

    /// Create the table, its index and (PostgreSQL) the `NOTIFY` trigger if
    /// they do not exist. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), Error> {
        let t = &self.sql.table;
        match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("sinew-events:{t}"))
                    .execute(&mut *tx)
                    .await?;
                for stmt in [
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY, kind SMALLINT NOT NULL, \
                         exchange TEXT NOT NULL, routing_key TEXT NOT NULL, payload TEXT NOT NULL, \
                         event_time_ms BIGINT NOT NULL, send_after_ms BIGINT, tags JSONB, correlation_id TEXT)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS {t}_send_after ON {t} (send_after_ms) WHERE send_after_ms IS NOT NULL"
                    ),
                    format!(
                        "CREATE OR REPLACE FUNCTION {t}_notify() RETURNS trigger LANGUAGE plpgsql AS \
                         $$ BEGIN PERFORM pg_notify('{t}', ''); RETURN NULL; END $$"
                    ),
                    format!(
                        "CREATE OR REPLACE TRIGGER {t}_notify AFTER INSERT ON {t} \
                         FOR EACH STATEMENT EXECUTE FUNCTION {t}_notify()"
                    ),
                ] {
                    sqlx::query(trusted(stmt)).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Database::Sqlite(pool) => {
                for stmt in [
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL, \
                         exchange TEXT NOT NULL, routing_key TEXT NOT NULL, payload TEXT NOT NULL, \
                         event_time_ms INTEGER NOT NULL, send_after_ms INTEGER, tags TEXT, correlation_id TEXT)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS {t}_send_after ON {t} (send_after_ms) WHERE send_after_ms IS NOT NULL"
                    ),
                ] {
                    sqlx::query(trusted(stmt)).execute(pool).await?;
                }
            }
        }
        Ok(())
    }

    /// Drop the table (and on PostgreSQL its trigger function).
    pub async fn drop_table(&self) -> Result<(), Error> {
        let t = &self.sql.table;
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(trusted(format!("DROP TABLE IF EXISTS {t}")))
                    .execute(pool)
                    .await?;
                sqlx::query(trusted(format!("DROP FUNCTION IF EXISTS {t}_notify()")))
                    .execute(pool)
                    .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(trusted(format!("DROP TABLE IF EXISTS {t}")))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Write an event row on `conn` (typically `&mut *tx` of the caller's
    /// transaction). Returns the row id, which becomes `eventId`.
    pub async fn publish<'c>(
        &self,
        conn: impl Into<OutboxConn<'c>>,
        event: &NewEvent,
    ) -> Result<i64, Error> {
        let now = SystemTime::now();
        let tags = if event.send_after.is_some() || !event.tags.is_empty() {
            Some(serde_json::to_string(&event.tags).unwrap_or_else(|_| "{}".into()))
        } else {
            None
        };
        let row = Row {
            kind: KIND_EVENT,
            exchange: &event.aggregate,
            routing_key: &event.event_type,
            payload: event.payload_text(),
            event_time_ms: to_millis(event.resolved_time(now)),
            send_after_ms: event.send_after.map(to_millis),
            tags,
            correlation_id: event.correlation_id.as_deref(),
        };
        let id = self.insert(conn.into(), &row).await?;
        metrics::counter!("sinew_events_outbox_writes_total", "kind" => "event").increment(1);
        tracing::debug!(id, exchange = %event.aggregate, routing_key = %event.event_type, "event written to outbox");
        Ok(id)
    }

    /// `publish_event(aggregate, event_type, payload)` on the outbox's own
    /// pool, in a transaction of its own.
    pub async fn publish_event(
        &self,
        aggregate: &str,
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<i64, Error> {
        self.enqueue(&NewEvent::new(aggregate, event_type, payload))
            .await
    }

    /// Write `event` on the outbox's own pool.
    pub async fn enqueue(&self, event: &NewEvent) -> Result<i64, Error> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                self.publish(&mut *conn, event).await
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                self.publish(&mut *conn, event).await
            }
        }
    }

    /// Write a command row on `conn`: its body (with `meta.expiredTime`
    /// computed now) is stored whole and relayed as is.
    pub async fn send_command<'c>(
        &self,
        conn: impl Into<OutboxConn<'c>>,
        command: &NewCommand,
    ) -> Result<i64, Error> {
        let now = SystemTime::now();
        let row = Row {
            kind: KIND_COMMAND,
            exchange: &command.service,
            routing_key: &command.name,
            payload: String::from_utf8(command.body_at(now)?).unwrap_or_default(),
            event_time_ms: to_millis(now),
            send_after_ms: None,
            tags: None,
            correlation_id: command.correlation_id.as_deref(),
        };
        let id = self.insert(conn.into(), &row).await?;
        metrics::counter!("sinew_events_outbox_writes_total", "kind" => "command").increment(1);
        Ok(id)
    }

    async fn insert(&self, conn: OutboxConn<'_>, row: &Row<'_>) -> Result<i64, Error> {
        let id = match conn {
            OutboxConn::Postgres(c) => {
                sqlx::query_scalar::<_, i64>(self.sql.insert_pg.clone())
                    .bind(row.kind)
                    .bind(row.exchange)
                    .bind(row.routing_key)
                    .bind(&row.payload)
                    .bind(row.event_time_ms)
                    .bind(row.send_after_ms)
                    .bind(row.tags.as_deref())
                    .bind(row.correlation_id)
                    .fetch_one(c)
                    .await?
            }
            OutboxConn::Sqlite(c) => {
                sqlx::query_scalar::<_, i64>(self.sql.insert_lite.clone())
                    .bind(row.kind)
                    .bind(row.exchange)
                    .bind(row.routing_key)
                    .bind(&row.payload)
                    .bind(row.event_time_ms)
                    .bind(row.send_after_ms)
                    .bind(row.tags.as_deref())
                    .bind(row.correlation_id)
                    .fetch_one(c)
                    .await?
            }
        };
        Ok(id)
    }

    /// Cancel future events of `aggregate` + `event_type` whose tags contain
    /// every given `(key, value)` pair (values compared as strings). Only
    /// rows written with a send-after time or tags are candidates; an empty
    /// `tags` cancels all of them. Returns how many were cancelled.
    pub async fn cancel_future_events<'c>(
        &self,
        conn: impl Into<OutboxConn<'c>>,
        aggregate: &str,
        event_type: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<u64, Error> {
        let t = &self.sql.table;
        let n = match conn.into() {
            OutboxConn::Postgres(c) => {
                let wanted = serde_json::to_string(tags).unwrap_or_else(|_| "{}".into());
                sqlx::query(trusted(format!(
                    "DELETE FROM {t} WHERE kind = {KIND_EVENT} AND exchange = $1 AND routing_key = $2 \
                     AND tags IS NOT NULL AND tags @> $3::jsonb"
                )))
                .bind(aggregate)
                .bind(event_type)
                .bind(wanted)
                .execute(c)
                .await?
                .rows_affected()
            }
            OutboxConn::Sqlite(c) => {
                let mut sql = format!(
                    "DELETE FROM {t} WHERE kind = {KIND_EVENT} AND exchange = ?1 AND routing_key = ?2 AND tags IS NOT NULL"
                );
                for i in 0..tags.len() {
                    let (k, v) = (3 + 2 * i, 4 + 2 * i);
                    sql.push_str(&format!(
                        " AND EXISTS (SELECT 1 FROM json_each({t}.tags) WHERE key = ?{k} AND type = 'text' AND value = ?{v})"
                    ));
                }
                let mut q = sqlx::query(trusted(sql)).bind(aggregate).bind(event_type);
                for (k, v) in tags {
                    q = q.bind(k.as_str()).bind(v.as_str());
                }
                q.execute(c).await?.rows_affected()
            }
        };
        metrics::counter!("sinew_events_future_cancelled_total").increment(n);
        tracing::debug!(
            aggregate,
            event_type,
            cancelled = n,
            "future events cancelled"
        );
        Ok(n)
    }

    /// Cancel future events on the outbox's own pool (see
    /// [`Outbox::cancel_future_events`]).
    pub async fn cancel(
        &self,
        aggregate: &str,
        event_type: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<u64, Error> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                self.cancel_future_events(&mut *conn, aggregate, event_type, tags)
                    .await
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                self.cancel_future_events(&mut *conn, aggregate, event_type, tags)
                    .await
            }
        }
    }

    /// How many rows wait in the outbox (due or not).
    pub async fn pending(&self) -> Result<i64, Error> {
        Ok(match &self.db {
            Database::Postgres(pool) => {
                sqlx::query_scalar(self.sql.count.clone())
                    .fetch_one(pool)
                    .await?
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar(self.sql.count.clone())
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// The earliest send-after time of a waiting future event.
    pub(crate) async fn next_due_ms(&self) -> Result<Option<i64>, Error> {
        Ok(match &self.db {
            Database::Postgres(pool) => {
                sqlx::query_scalar(self.sql.next_due.clone())
                    .fetch_one(pool)
                    .await?
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar(self.sql.next_due.clone())
                    .fetch_one(pool)
                    .await?
            }
        })
    }
}

struct Row<'a> {
    kind: i16,
    exchange: &'a str,
    routing_key: &'a str,
    payload: String,
    event_time_ms: i64,
    send_after_ms: Option<i64>,
    tags: Option<String>,
    correlation_id: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        for ok in ["sinew_outbox", "_t1", "Outbox2"] {
            assert!(valid_table(ok), "{ok}");
        }
        for bad in [
            "",
            "1t",
            "a-b",
            "a;drop table x",
            "a.b",
            "é",
            &"x".repeat(49),
        ] {
            assert!(!valid_table(bad), "{bad}");
        }
    }
}
