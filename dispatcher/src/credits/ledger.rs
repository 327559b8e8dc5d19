//! Tenant accounts and their ledger (`credit_accounts`, `credit_ledger`; migration
//! `…0007_credits.sql`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use gpuq_schemas::{JobType, Tenant};
use gpuq_service::CreditShortfall;

use super::{CreditSettings, Price};

/// The largest grant or adjustment an admin may make at once.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000;
/// The most ledger entries one read returns.
pub const MAX_ENTRIES: i64 = 200;

/// A tenant's account. A tenant with no account has nothing: every figure 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Account {
    /// Credits in the account.
    pub balance: i64,
    /// Set aside for the tenant's unfinished jobs.
    pub held: i64,
    /// Balance minus held: what new jobs may hold.
    pub available: i64,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Increasing with time.
    pub id: i64,
    /// `grant`, `adjustment`, `hold`, `settle` or `release`.
    pub kind: String,
    /// The job it concerns (hold, settle, release).
    pub job_id: Option<Uuid>,
    /// What it added to the balance (a settlement's charge is negative).
    pub balance_delta: i64,
    /// What it added to the held amount (a hold positive, its settlement or release
    /// negative).
    pub held_delta: i64,
    /// A metered settlement's measured GPU-seconds.
    pub gpu_seconds: Option<f64>,
    /// Why: an admin's reason, `starting grant`, or how the job ended.
    pub reason: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// An admin's change to a balance.
#[derive(Debug, Clone)]
pub struct Adjustment {
    /// `grant` (amount above 0) or `adjustment` (any amount but 0).
    pub kind: &'static str,
    /// Credits added (negative: taken).
    pub amount: i64,
    /// Why, for the ledger.
    pub reason: String,
    /// Makes a retry of the same change a no-op.
    pub key: String,
}

/// What [`adjust`] did.
#[derive(Debug)]
pub enum Adjusted {
    /// The change is in the ledger (now, or by an earlier request with the same key).
    Applied {
        /// Its entry.
        entry: Entry,
        /// False when an earlier request with the same key made it.
        new: bool,
    },
    /// The key was used for another change.
    KeyReused,
    /// Taking `amount` would leave less than the unfinished jobs hold.
    WouldOverdraw(Account),
}

const ENTRY_COLUMNS: &str =
    "id, kind, job_id, balance_delta, held_delta, gpu_seconds, reason, created_at";

/// `tenant`'s account.
pub async fn account(db: &PgPool, tenant: &Tenant) -> sqlx::Result<Account> {
    let row = sqlx::query_as(
        "SELECT balance, held, balance - held AS available FROM credit_accounts WHERE tenant = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.unwrap_or(Account {
        balance: 0,
        held: 0,
        available: 0,
    }))
}

/// `tenant`'s latest ledger entries, newest first: at most `limit`, older than `before`.
pub async fn entries(
    db: &PgPool,
    tenant: &Tenant,
    limit: i64,
    before: Option<i64>,
) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM credit_ledger WHERE tenant = $1 AND id < $2 \
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(tenant.as_str())
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, MAX_ENTRIES))
    .fetch_all(db)
    .await
}

/// Holds `price` for `job` from `tenant`'s account inside the caller's transaction (a dead
/// job requeued by an admin), or says what is missing.
pub async fn hold(
    conn: &mut PgConnection,
    job: Uuid,
    tenant: &Tenant,
    price: Price,
    starting_grant: i64,
) -> Result<Result<(), CreditShortfall>, sqlx::Error> {
    let (ok, balance, held): (bool, i64, i64) =
        sqlx::query_as("SELECT * FROM gpuq_hold_credits($1, $2, $3, $4, $5)")
            .bind(job)
            .bind(tenant.as_str())
            .bind(price.amount)
            .bind(price.per_gpu_second)
            .bind(starting_grant)
            .fetch_one(conn)
            .await?;
    Ok(if ok {
        Ok(())
    } else {
        Err(CreditShortfall {
            balance,
            held,
            available: balance - held,
            price: price.amount,
        })
    })
}

/// Holds again the price of a dead job an admin requeues (its first hold was released when
/// it died), inside the caller's transaction; Ok(Ok) when credits are off.
pub async fn hold_again(
    conn: &mut PgConnection,
    job: Uuid,
    settings: &CreditSettings,
) -> Result<Result<(), CreditShortfall>, sqlx::Error> {
    let (job_type, num_images, tenant): (String, Option<i32>, String) = sqlx::query_as(
        "SELECT job_type, (envelope #>> '{config,num_images}')::int, gpuq_job_tenant(j) \
         FROM jobs j WHERE id = $1",
    )
    .bind(job)
    .fetch_one(&mut *conn)
    .await?;
    let (Ok(job_type), Ok(tenant)) = (job_type.parse::<JobType>(), tenant.parse::<Tenant>()) else {
        return Err(sqlx::Error::Protocol(format!(
            "job {job} has an unknown type or tenant"
        )));
    };
    let images = num_images.and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
    match settings.price(job_type, images) {
        Some(price) => hold(conn, job, &tenant, price, settings.starting_grant.into()).await,
        None => Ok(Ok(())),
    }
}

/// Applies an admin's grant or adjustment once per key.
pub async fn adjust(db: &PgPool, tenant: &Tenant, change: &Adjustment) -> sqlx::Result<Adjusted> {
    if let Some(done) = by_key(db, tenant, change).await? {
        return Ok(done);
    }
    let mut tx = db.begin().await?;
    sqlx::query("SELECT gpuq_credit_account($1, 0)")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    let moved = sqlx::query(
        "UPDATE credit_accounts SET balance = balance + $2, updated_at = now() \
         WHERE tenant = $1 AND balance + $2 >= held",
    )
    .bind(tenant.as_str())
    .bind(change.amount)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        drop(tx);
        return Ok(Adjusted::WouldOverdraw(account(db, tenant).await?));
    }
    let entry = sqlx::query_as(&format!(
        "INSERT INTO credit_ledger (tenant, kind, balance_delta, held_delta, reason, \
         idempotency_key) VALUES ($1, $2, $3, 0, $4, $5) RETURNING {ENTRY_COLUMNS}"
    ))
    .bind(tenant.as_str())
    .bind(change.kind)
    .bind(change.amount)
    .bind(&change.reason)
    .bind(&change.key)
    .fetch_one(&mut *tx)
    .await;
    match entry {
        Ok(entry) => {
            tx.commit().await?;
            Ok(Adjusted::Applied { entry, new: true })
        }
        // A concurrent request with the same key committed first: answer as it did.
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            drop(tx);
            Ok(by_key(db, tenant, change)
                .await?
                .unwrap_or(Adjusted::KeyReused))
        }
        Err(e) => Err(e),
    }
}

/// The change already made with `change.key`, if any.
async fn by_key(
    db: &PgPool,
    tenant: &Tenant,
    change: &Adjustment,
) -> sqlx::Result<Option<Adjusted>> {
    let found: Option<Entry> = sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM credit_ledger WHERE tenant = $1 AND idempotency_key = $2"
    ))
    .bind(tenant.as_str())
    .bind(&change.key)
    .fetch_optional(db)
    .await?;
    Ok(found.map(|entry| {
        let same = entry.kind == change.kind
            && entry.balance_delta == change.amount
            && entry.reason.as_deref() == Some(change.reason.as_str());
        if same {
            Adjusted::Applied { entry, new: false }
        } else {
            Adjusted::KeyReused
        }
    }))
}

/// Tenants this process knows to have an account, so that an enqueue creates a tenant's
/// account (with its starting grant) in a statement of its own, before its first priced job
/// reaches a batch: a batch then only locks accounts, never creates one while holding
/// others (migration `…0007_credits.sql`). Accounts are never deleted, so the set is never
/// wrong; it is emptied when it reaches [`KnownAccounts::MAX`] tenants.
#[derive(Default)]
pub struct KnownAccounts {
    known: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl KnownAccounts {
    /// The most tenants remembered.
    pub const MAX: usize = 100_000;

    /// Makes sure `tenant` has an account (created with `starting_grant` if not).
    pub async fn ensure(
        &self,
        db: &PgPool,
        tenant: &Tenant,
        starting_grant: i64,
    ) -> sqlx::Result<()> {
        let known = |k: &Self| {
            k.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(tenant.as_str())
        };
        if known(self) {
            return Ok(());
        }
        sqlx::query("SELECT gpuq_credit_account($1, $2)")
            .bind(tenant.as_str())
            .bind(starting_grant)
            .execute(db)
            .await?;
        let mut set = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= Self::MAX {
            set.clear();
        }
        set.insert(tenant.to_string());
        Ok(())
    }
}
