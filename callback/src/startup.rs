//! [`Application`]: builds every dependency from [`Settings`], binds the listener and
//! serves. Actix handles SIGTERM and ctrl-c: it stops accepting, lets in-flight callbacks
//! finish, then returns from [`Application::run_until_stopped`].

use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use gpuq_queue::RedisTarget;
use gpuq_service::{connection_pool, resource, server, Readiness, MIGRATOR};
use secrecy::ExposeSecret;

use crate::auth::Verifier;
use crate::configuration::Settings;
use crate::record::Recorder;
use crate::routes;
use crate::storage_path::{InvalidStorageHost, StorageHost, StorageRules};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// No callback secret: every callback would be refused, or worse, none checked.
    #[error("no callback secret configured (GPUQ_CALLBACK_SECRET)")]
    NoSecrets,
    /// A blank callback secret: anyone could sign with it.
    #[error("a callback secret is blank (GPUQ_CALLBACK_SECRET)")]
    BlankSecret,
    /// The storage host setting is not a URL.
    #[error(transparent)]
    StorageHost(#[from] InvalidStorageHost),
    /// The database URL is invalid.
    #[error("invalid database settings")]
    Database(#[source] sqlx::Error),
    /// The migrations could not be applied.
    #[error("applying migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Redis could not be reached.
    #[error("connecting to redis")]
    Redis(#[from] gpuq_queue::QueueError),
    /// The Redis URL is invalid.
    #[error("invalid redis url")]
    RedisUrl(#[from] redis::RedisError),
    /// The listener could not be bound or the server not started.
    #[error("binding the listener")]
    Io(#[from] std::io::Error),
}

/// What every request handler shares.
pub struct AppState {
    /// Applies callbacks.
    pub recorder: Recorder,
    /// Checks signatures.
    pub verifier: Verifier,
    /// Body cap, bytes.
    pub max_body_bytes: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    /// How long an accepted signature is remembered to recognise replays: twice the
    /// signature window (an older request is refused as stale).
    pub replay_memory: Duration,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<secrecy::SecretString>,
}

/// The running service.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connects, migrates (when configured), binds `application.host:port` and prepares
    /// the server. Nothing is served until [`Self::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.auth.secrets.is_empty() {
            return Err(StartupError::NoSecrets);
        }
        if settings
            .auth
            .secrets
            .iter()
            .any(|k| k.expose_secret().trim().is_empty())
        {
            return Err(StartupError::BlankSecret);
        }
        let pool = connection_pool(&settings.database).map_err(StartupError::Database)?;
        if settings.database.migrate {
            MIGRATOR.run(&pool).await?;
        }
        let target = RedisTarget::open(settings.redis.url.expose_secret())?;
        let conn = gpuq_queue::connect(&target).await?;
        let host = settings
            .storage
            .host
            .as_deref()
            .map(StorageHost::parse)
            .transpose()?;
        let readiness = Readiness::new(pool.clone(), conn.clone());
        let recorder = Recorder::new(
            pool,
            target,
            conn,
            settings.redis.namespace.clone(),
            settings.queue.queue_config(),
            StorageRules::new(host, settings.storage.buckets.clone()),
        )
        .with_progress_webhooks(Duration::from_millis(
            settings.webhooks.progress_interval_ms,
        ))
        .with_health(settings.health);
        let app = &settings.application;
        let state = web::Data::new(AppState {
            recorder,
            verifier: Verifier::new(
                settings.auth.secrets.clone(),
                settings.auth.window_secs,
                settings.auth.legacy_body_signatures,
            ),
            max_body_bytes: app.max_body_bytes,
            body_timeout: app.body_timeout(),
            replay_memory: Duration::from_secs(2 * settings.auth.window_secs.max(1) as u64 + 1),
            metrics: crate::metrics::Metrics::default(),
            metrics_token: app.metrics_token.clone(),
        });
        let listener = server::bind(app)?;
        let port = listener.local_addr()?.port();
        let server = server::serve(listener, app, readiness, move |cfg| {
            cfg.app_data(state.clone());
            configure(cfg);
        })?;
        tracing::info!(port, namespace = %settings.redis.namespace, "gpuq-callback listening");
        Ok(Self { port, server })
    }

    /// The bound port (useful when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or ctrl-c, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Registers the routes (`gpuq_service::serve` adds `/healthz`, `/readyz` and the 404).
fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/callback", "POST").route(web::post().to(routes::callback)))
        .service(
            resource("/functions/v1/job-callback", "POST")
                .route(web::post().to(routes::legacy_callback)),
        )
        .service(resource("/metrics", "GET").route(web::get().to(routes::metrics)));
}
