//! The `factors` table, written only by the account flow.

use std::ops::{Deref, DerefMut};

use chrono::{DateTime, Utc};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Destination, DestinationParseError};

use crate::domain::factor::{FactorKind, FactorStatus};
use crate::ids::{AccountId, Label};

text_enum!(FactorKind);
text_enum!(FactorStatus);

/// One of an account's factors. Never holds a secret; the HTTP edge shows it
/// through its own view.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Factor {
    pub id: Uuid,
    pub kind: FactorKind,
    /// Where a factor's codes go: a phone in E.164 (sms, voice), an email
    /// address (email); `None` for an authenticator.
    pub destination: Option<String>,
    pub label: Option<String>,
    pub status: FactorStatus,
    pub verified_at: Option<DateTime<Utc>>,
    /// Where a login challenge sends its code unless told otherwise.
    pub is_default: bool,
}

impl Factor {
    pub fn is_active(&self) -> bool {
        self.status == FactorStatus::Active
    }

    /// A factor verifyd sends codes to (a phone or an address), as opposed
    /// to an authenticator, which makes its own.
    pub fn receives_codes(&self) -> bool {
        self.kind.channel().is_some()
    }

    /// Where its codes go, read by its kind; `None` for an authenticator.
    pub fn destination(&self) -> Option<Result<Destination, DestinationParseError>> {
        let kind = self.kind.channel()?.destination();
        Some(Destination::from_stored(kind, self.destination.as_deref().unwrap_or_default()))
    }
}

const COLUMNS: &str = "id, kind, destination, label, status, verified_at, is_default";

/// A transaction that holds one account's lock from its first statement to
/// its end. Every change to an account's factors, codes and challenges runs in
/// one, so changes to one account (activation, the default, deletion, reset,
/// answers) are serialised across processes, and "exactly one default" and
/// "not the last factor" hold. Functions that need the lock take this type, so
/// a caller cannot forget it; for everything else it is a `PgConnection`.
pub struct AccountTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: Uuid,
    account_id: AccountId,
}

impl AccountTx {
    /// Begins a transaction and takes the account's lock, waiting for any
    /// other transaction that holds it.
    pub async fn begin(pool: &PgPool, tenant_id: Uuid, account_id: &AccountId) -> Result<Self, sqlx::Error> {
        let mut tx = pool.begin().await?;
        let key = super::keys::lock_key(&["account", &tenant_id.to_string(), account_id.as_str()]);
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *tx).await?;
        Ok(AccountTx { tx, tenant_id, account_id: account_id.clone() })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl Deref for AccountTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for AccountTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl From<AccountTx> for Transaction<'static, Postgres> {
    fn from(locked: AccountTx) -> Self {
        locked.tx
    }
}

/// Makes the oldest active factor the default when the account has none;
/// returns the factor it made the default.
pub async fn ensure_default(tx: &mut AccountTx) -> Result<Option<Uuid>, sqlx::Error> {
    let (tenant_id, account_id) = (tx.tenant_id, tx.account_id.clone());
    sqlx::query_scalar(
        "UPDATE factors SET is_default = true WHERE id = (
            SELECT id FROM factors WHERE tenant_id = $1 AND account_id = $2 AND status = 'active'
            ORDER BY verified_at, created_at, id LIMIT 1)
         AND NOT EXISTS (SELECT 1 FROM factors WHERE tenant_id = $1 AND account_id = $2 AND is_default)
         RETURNING id",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_optional(&mut **tx)
    .await
}

/// Whether the account holds an active factor.
pub async fn has_active(conn: &mut PgConnection, tenant_id: Uuid, account_id: &AccountId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM factors WHERE tenant_id = $1 AND account_id = $2 AND status = 'active')",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_one(conn)
    .await
}

/// Makes an active factor the default and returns it; `None` when there is no
/// such factor.
pub async fn set_default(tx: &mut AccountTx, id: Uuid) -> Result<Option<Factor>, sqlx::Error> {
    let (tenant_id, account_id) = (tx.tenant_id, tx.account_id.clone());
    let conn: &mut PgConnection = tx;
    let exists: Option<bool> = sqlx::query_scalar(
        "SELECT true FROM factors WHERE id = $1 AND tenant_id = $2 AND account_id = $3 AND status = 'active'",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_none() {
        return Ok(None);
    }
    // Two statements: the unique index on the default is checked row by row, so
    // one UPDATE that sets the new default and clears the old can trip it.
    sqlx::query(
        "UPDATE factors SET is_default = false WHERE tenant_id = $1 AND account_id = $2 AND is_default AND id <> $3",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let sql = format!("UPDATE factors SET is_default = true WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await
}

pub async fn get(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<Option<Factor>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM factors WHERE id = $1 AND tenant_id = $2 AND account_id = $3");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(account_id.as_str())
        .fetch_optional(conn)
        .await
}

/// Removes every factor of the account, pending ones too; returns how many of
/// them were active (the ones the user was told of by `factor.added`).
pub async fn delete_all(conn: &mut PgConnection, tenant_id: Uuid, account_id: &AccountId) -> Result<u64, sqlx::Error> {
    let active: i64 = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM factors WHERE tenant_id = $1 AND account_id = $2 RETURNING status)
         SELECT count(*) FILTER (WHERE status = 'active') FROM gone",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(active).unwrap_or_default())
}

/// Adds a factor that receives codes by `kind` at `to` (`active`, or
/// `pending` until a step-up activates it); returns it and whether it is new.
pub async fn upsert_destination(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    kind: Channel,
    to: &Destination,
    active: bool,
    verified_at: DateTime<Utc>,
) -> Result<(Factor, bool), sqlx::Error> {
    let sql = format!(
        "INSERT INTO factors (id, tenant_id, account_id, kind, destination, status, verified_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $7 THEN 'active' ELSE 'pending' END, $6)
         ON CONFLICT (tenant_id, account_id, kind, destination) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let inserted: Option<Factor> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::new_v4())
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(FactorKind::of_channel(kind).as_str())
        .bind(to.as_str())
        .bind(verified_at)
        .bind(active)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(f) = inserted {
        return Ok((f, true));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM factors WHERE tenant_id = $1 AND account_id = $2 AND kind = $3 AND destination = $4"
    );
    let existing: Factor = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(FactorKind::of_channel(kind).as_str())
        .bind(to.as_str())
        .fetch_one(conn)
        .await?;
    Ok((existing, false))
}

pub async fn list(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
) -> Result<Vec<Factor>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM factors WHERE tenant_id = $1 AND account_id = $2 ORDER BY created_at, id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(account_id.as_str()).fetch_all(conn).await
}

/// Factors one account may hold, any kind and state. Authenticator enrolments
/// past it are refused, which bounds the factor list and a challenge's
/// choices; phones are bounded by the verification throttles.
pub const MAX_PER_ACCOUNT: i64 = 20;

pub async fn count(conn: &mut PgConnection, tenant_id: Uuid, account_id: &AccountId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM factors WHERE tenant_id = $1 AND account_id = $2")
        .bind(tenant_id)
        .bind(account_id.as_str())
        .fetch_one(conn)
        .await
}

/// A pending authenticator-app factor with its sealed secret.
pub async fn insert_totp(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    account_id: &AccountId,
    label: Option<&Label>,
    sealed_secret: &[u8],
) -> Result<Factor, sqlx::Error> {
    let sql = format!(
        "INSERT INTO factors (id, tenant_id, account_id, kind, label, status, totp_sealed)
         VALUES ($1, $2, $3, 'totp', $4, 'pending', $5) RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(label.map(Label::as_str))
        .bind(sealed_secret)
        .fetch_one(conn)
        .await
}

/// The TOTP state of one factor, row-locked until the transaction ends.
#[derive(sqlx::FromRow)]
pub struct TotpState {
    pub status: FactorStatus,
    pub totp_sealed: Vec<u8>,
    pub totp_last_step: Option<i64>,
    pub confirm_attempts: i32,
}

pub async fn lock_totp(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<Option<TotpState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, totp_sealed, totp_last_step, confirm_attempts FROM factors
         WHERE id = $1 AND tenant_id = $2 AND account_id = $3 AND kind = 'totp' FOR UPDATE",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_optional(conn)
    .await
}

/// Records an accepted TOTP step; a pending factor becomes active.
pub async fn accept_totp(
    conn: &mut PgConnection,
    id: Uuid,
    step: i64,
    now: DateTime<Utc>,
) -> Result<Factor, sqlx::Error> {
    let sql = format!(
        "UPDATE factors SET totp_last_step = $2, status = 'active', verified_at = coalesce(verified_at, $3)
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(step).bind(now).fetch_one(conn).await
}

/// Activates a pending factor (a phone verified while another factor was
/// active, once a step-up allows it). `None` when there is no such pending factor.
pub async fn activate(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<Option<Factor>, sqlx::Error> {
    let sql = format!(
        "UPDATE factors SET status = 'active'
         WHERE id = $1 AND tenant_id = $2 AND account_id = $3 AND status = 'pending' AND kind <> 'totp'
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(account_id.as_str())
        .fetch_optional(conn)
        .await
}

/// Counts a wrong confirmation code; returns the attempts so far.
pub async fn count_wrong_confirmation(conn: &mut PgConnection, id: Uuid) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE factors SET confirm_attempts = confirm_attempts + 1 WHERE id = $1 RETURNING confirm_attempts",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM factors WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}
