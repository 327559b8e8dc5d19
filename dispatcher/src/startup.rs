//! [`Application`]: builds the dispatcher from [`Settings`] and runs it until SIGTERM.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use gpuq_queue::{Queue, RedisTarget};
use gpuq_schemas::{catalog::CATALOG, QueueName};

use crate::auth::Authenticator;
use crate::configuration::Settings;
use crate::state::AppState;
use crate::{maintenance, routes};

/// A built, bound, not yet running dispatcher.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// Connects to PostgreSQL (lazily: the first query connects).
pub fn pg_pool(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    Ok(gpuq_schemas::pg::pool_options(32, Duration::from_secs(3))
        .connect_lazy(settings.database_url.expose_secret())?)
}

/// Applies the SQL migrations; concurrent callers serialize on sqlx's advisory lock.
pub async fn migrate(db: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../schemas/migrations").run(db).await?;
    Ok(())
}

impl Application {
    /// Connects, migrates (unless disabled), binds the listener and starts the background
    /// loops.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = pg_pool(&settings)?;
        if settings.migrate {
            migrate(&db).await?;
        }
        let target = RedisTarget::open(settings.redis_url.expose_secret())?;
        let redis = gpuq_queue::connect(&target).await?;
        let mut queues = BTreeMap::new();
        for spec in &CATALOG {
            if !queues.contains_key(spec.queue) {
                let name = QueueName::parse(spec.queue)?;
                let queue = Queue::new(
                    target.clone(),
                    redis.clone(),
                    &settings.redis_namespace,
                    name,
                    settings.queue.queue_config(),
                );
                queues.insert(spec.queue.to_owned(), queue);
            }
        }
        let auth = Authenticator::new(&settings.auth);
        let listener = TcpListener::bind(&settings.listen)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState::new(db, queues, redis, target, auth, settings));
        let app_state = state.clone();
        let http = &state.settings.http;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(crate::unread_body::close_if_unread))
                .wrap(TracingLogger::default())
                .app_data(app_state.clone())
                .configure(routes::configure)
        })
        // Slow clients: a first request head gets `header_timeout_ms` (then 408); bodies get
        // `body_timeout_ms` in routes::body; connections per worker are bounded.
        .client_request_timeout(Duration::from_millis(http.header_timeout_ms))
        .client_disconnect_timeout(Duration::from_millis(http.disconnect_timeout_ms))
        .max_connections(http.max_connections)
        .shutdown_timeout(20)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            state,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves requests and runs the background loops until SIGTERM/ctrl-c (actix handles
    /// the signal: it stops accepting, finishes in-flight requests, then returns); the
    /// loops are then cancelled and awaited.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let loops = tokio::spawn(maintenance::run(self.state.clone(), stop.clone()));
        let served = self.server.await;
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), loops).await;
        Ok(served?)
    }
}
