//! [`Application`]: builds every dependency from [`Settings`], binds the listener and
//! serves. Actix handles SIGTERM and ctrl-c: it stops accepting, lets in-flight callbacks
//! finish (up to 30 s), then returns from [`Application::run_until_stopped`].

use std::net::TcpListener;
use std::str::FromStr;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use gpuq_queue::{Backoff, QueueConfig, RedisTarget};
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tracing_actix_web::TracingLogger;

use crate::auth::Verifier;
use crate::configuration::{ApplicationSettings, DatabaseSettings, Settings};
use crate::error::{method_not_allowed, not_found};
use crate::record::Recorder;
use crate::routes;
use crate::storage_path::{InvalidStorageHost, StorageHost, StorageRules};

/// The migrations of `schemas/migrations`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../schemas/migrations");

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// No callback secret: every callback would be refused, or worse, none checked.
    #[error("no callback secret configured (GPUQ_CALLBACK_SECRET)")]
    NoSecrets,
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
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
}

/// The running service.
pub struct Application {
    port: u16,
    server: Server,
}

/// A lazily connecting pool: the service starts (and `/readyz` says 503) while
/// PostgreSQL is still coming up, unless migrations must run first.
pub fn connection_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(settings.url.expose_secret())?;
    Ok(gpuq_schemas::pg::pool_options(
        settings.max_connections,
        Duration::from_millis(settings.acquire_timeout_ms),
    )
    .connect_lazy_with(options))
}

impl Application {
    /// Connects, migrates (when configured), binds `application.host:port` and prepares
    /// the server. Nothing is served until [`Self::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.auth.secrets.is_empty() {
            return Err(StartupError::NoSecrets);
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
        let queue_config = QueueConfig {
            backoff: Backoff {
                base: Duration::from_millis(settings.redis.backoff_base_ms),
                max: Duration::from_millis(settings.redis.backoff_max_ms),
            },
            ..QueueConfig::default()
        };
        let recorder = Recorder::new(
            pool,
            target,
            conn,
            settings.redis.namespace.clone(),
            queue_config,
            StorageRules::new(host, settings.storage.buckets.clone()),
        );
        let state = web::Data::new(AppState {
            recorder,
            verifier: Verifier::new(settings.auth.secrets.clone(), settings.auth.window_secs),
            max_body_bytes: settings.application.max_body_bytes,
            body_timeout: Duration::from_millis(settings.application.body_timeout_ms),
            metrics: crate::metrics::Metrics::default(),
        });
        let app = &settings.application;
        let host = if app.host.contains(':') {
            format!("[{}]", app.host)
        } else {
            app.host.clone()
        };
        let listener = TcpListener::bind(format!("{host}:{}", app.port))?;
        let port = listener.local_addr()?.port();
        tracing::info!(port, namespace = %settings.redis.namespace, "gpuq-callback listening");
        let server = run(listener, state, app)?;
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

fn run(
    listener: TcpListener,
    state: web::Data<AppState>,
    app: &ApplicationSettings,
) -> Result<Server, std::io::Error> {
    let server = HttpServer::new(move || {
        let callback = || web::post().to(routes::callback);
        App::new()
            .wrap(from_fn(crate::unread_body::close_if_unread))
            .wrap(TracingLogger::default())
            .app_data(state.clone())
            .service(
                web::resource("/v1/callback")
                    .route(callback())
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/functions/v1/job-callback")
                    .route(callback())
                    .default_service(web::to(method_not_allowed)),
            )
            .route("/healthz", web::get().to(routes::healthz))
            .route("/readyz", web::get().to(routes::readyz))
            .route("/metrics", web::get().to(routes::metrics))
            .default_service(web::to(not_found))
    })
    // Slow clients: a first request head gets `header_timeout_ms` (then 408); bodies get
    // `body_timeout_ms` in body::read_limited; connections per worker are bounded.
    .client_request_timeout(Duration::from_millis(app.header_timeout_ms))
    .client_disconnect_timeout(Duration::from_millis(app.disconnect_timeout_ms))
    .max_connections(app.max_connections)
    .shutdown_timeout(30)
    .listen(listener)?;
    let server = if app.workers > 0 {
        server.workers(app.workers)
    } else {
        server
    };
    Ok(server.run())
}
