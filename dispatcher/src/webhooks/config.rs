//! Endpoints from the configuration (`webhooks.endpoints`), applied at start-up: each is
//! registered or brought up to date (one per URL), and one no longer configured is
//! disabled, its deliveries kept. The secret comes from the environment variable the entry
//! names, never from a file.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::input;
use super::store::NewEndpoint;

/// One configured endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredEndpoint {
    /// Where deliveries are posted.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// Only this tenant's jobs.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The environment variable holding its `whsec_...` secret.
    pub secret_env: String,
}

/// Why the configured endpoints could not be applied; the dispatcher does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An entry is not a usable endpoint; the message names it and the field.
    #[error("webhooks.endpoints[{index}] ({url}): {message}")]
    Invalid {
        index: usize,
        url: String,
        message: String,
    },
    /// The database refused.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Registers or updates every configured endpoint and disables the configured ones that
/// are gone, reading each secret from the process environment.
pub async fn apply(db: &PgPool, endpoints: &[ConfiguredEndpoint]) -> Result<(), ConfigError> {
    write(db, &check(endpoints, |name| std::env::var(name).ok())?).await
}

/// [`apply`], with `secret_of` looking a secret's variable up (tests pass their own).
pub async fn apply_with(
    db: &PgPool,
    endpoints: &[ConfiguredEndpoint],
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    write(db, &check(endpoints, secret_of)?).await
}

/// Every entry checked with the admin API's rules, its secret read: a configuration that
/// names an unusable endpoint stops the dispatcher at start-up, before anything is written.
pub fn check(
    endpoints: &[ConfiguredEndpoint],
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Vec<NewEndpoint>, ConfigError> {
    let mut checked = Vec::with_capacity(endpoints.len());
    for (index, e) in endpoints.iter().enumerate() {
        let invalid = |message: String| ConfigError::Invalid {
            index,
            url: e.url.clone(),
            message,
        };
        let secret = secret_of(&e.secret_env)
            .map(SecretString::from)
            .ok_or_else(|| invalid(format!("{} is not set", e.secret_env)))?;
        let body = json!({
            "url": e.url,
            "events": e.events,
            "tenant": e.tenant,
            "description": "from the configuration",
            "secret": secret.expose_secret(),
        });
        checked.push(input::new_endpoint(&body).map_err(|err| invalid(err.to_string()))?);
    }
    Ok(checked)
}

/// Writes checked endpoints (see [`check`]): one transaction.
pub async fn write(db: &PgPool, checked: &[NewEndpoint]) -> Result<(), ConfigError> {
    let mut tx = db.begin().await?;
    for e in checked {
        sqlx::query(
            "INSERT INTO webhook_endpoints (url, secret, events, tenant, description, from_config)
             VALUES ($1, $2, $3, $4, $5, true)
             ON CONFLICT (url) WHERE from_config AND deleted_at IS NULL DO UPDATE
             SET secret = EXCLUDED.secret, events = EXCLUDED.events, tenant = EXCLUDED.tenant,
                 enabled = webhook_endpoints.enabled
                           OR webhook_endpoints.disabled_reason IS NOT DISTINCT FROM 'removed from the configuration',
                 disabled_reason = NULLIF(webhook_endpoints.disabled_reason, 'removed from the configuration'),
                 updated_at = now()",
        )
        .bind(&e.url)
        .bind(&e.secret)
        .bind(&e.events)
        .bind(&e.tenant)
        .bind(&e.description)
        .execute(&mut *tx)
        .await?;
    }
    let urls: Vec<&str> = checked.iter().map(|e| e.url.as_str()).collect();
    sqlx::query(
        "UPDATE webhook_endpoints
         SET enabled = false, disabled_reason = 'removed from the configuration', updated_at = now()
         WHERE from_config AND enabled AND deleted_at IS NULL AND NOT (url = ANY ($1))",
    )
    .bind(&urls)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
