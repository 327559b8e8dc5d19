//! [`Application`]: builds the dispatcher from [`Settings`] and runs it until SIGTERM.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use gpuq_queue::{Queue, RedisTarget};
use gpuq_schemas::{catalog::CATALOG, QueueName};
use gpuq_service::{connection_pool, server, Readiness, MIGRATOR};

use crate::auth::Authenticator;
use crate::configuration::Settings;
use crate::state::AppState;
use crate::{maintenance, openapi, routes, webhooks};

/// A built, bound, not yet running dispatcher.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// The configuration's webhook endpoints, checked, when they still have to be written.
    endpoints: Option<Vec<webhooks::store::NewEndpoint>>,
}

impl Application {
    /// Connects, migrates (unless disabled), binds the listener and prepares the server.
    /// Nothing is served until [`Self::run_until_stopped`].
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        settings.webhooks.job_secret =
            webhooks::job::secret(&settings.webhooks, |name| std::env::var(name).ok())?;
        let db = connection_pool(&settings.database)?;
        if settings.database.migrate {
            MIGRATOR.run(&db).await?;
        }
        // Checked now (a bad entry stops the start) and written now, or, while PostgreSQL
        // does not answer (the dispatcher starts anyway, not ready), by a task that retries.
        let endpoints = webhooks::config::check(&settings.webhooks.endpoints, |name| {
            std::env::var(name).ok()
        })?;
        let endpoints = match webhooks::config::write(&db, &endpoints).await {
            Ok(()) => None,
            Err(webhooks::config::ConfigError::Database(e)) => {
                tracing::warn!(error = %e, "webhook endpoints from the configuration not written yet; retrying");
                Some(endpoints)
            }
            Err(e) => return Err(e.into()),
        };
        let target = RedisTarget::open(settings.redis.url.expose_secret())?;
        let redis = gpuq_queue::connect(&target).await?;
        let mut queues = BTreeMap::new();
        for spec in &CATALOG {
            if !queues.contains_key(spec.queue) {
                let queue = Queue::new(
                    target.clone(),
                    redis.clone(),
                    &settings.redis.namespace,
                    QueueName::parse(spec.queue)?,
                    settings.queue.queue_config(),
                );
                queues.insert(spec.queue.to_owned(), queue);
            }
        }
        for name in crate::overflow::queues(&settings.overflow) {
            let queue = Queue::new(
                target.clone(),
                redis.clone(),
                &settings.redis.namespace,
                QueueName::parse(name)?,
                settings.queue.queue_config(),
            );
            queues.insert(name.to_owned(), queue);
        }
        let auth = Authenticator::new(&settings.auth);
        let listener = server::bind(&settings.application)?;
        let port = listener.local_addr()?.port();
        let readiness = Readiness::new(db.clone(), redis.clone());
        let state = web::Data::new(AppState::new(db, queues, redis, target, auth, settings));
        let app_state = state.clone();
        let server = server::serve(
            listener,
            &state.settings.application,
            readiness,
            move |cfg| {
                cfg.app_data(app_state.clone());
                routes::configure(cfg);
                openapi::configure(cfg);
            },
        )?;
        tracing::info!(port, namespace = %state.namespace, "gpuq-dispatcher listening");
        Ok(Self {
            port,
            server,
            state,
            endpoints,
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
        if let Some(endpoints) = self.endpoints {
            tokio::spawn(write_endpoints(
                self.state.db.clone(),
                endpoints,
                stop.clone(),
            ));
        }
        let webhooks = self.state.settings.webhooks.enabled.then(|| {
            let sender = webhooks::sender::Sender::new(
                self.state.db.clone(),
                self.state.settings.webhooks.clone(),
                Some(self.state.metrics.webhooks.clone()),
            );
            let stop = stop.clone();
            tokio::spawn(async move {
                match sender {
                    Ok(sender) => webhooks::sender::run(sender, stop).await,
                    Err(e) => tracing::error!(error = %e, "webhook sender not started"),
                }
            })
        });
        let served = self.server.await;
        stop.cancel();
        self.state.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), loops).await;
        if let Some(webhooks) = webhooks {
            let _ = tokio::time::timeout(Duration::from_secs(10), webhooks).await;
        }
        Ok(served?)
    }
}

/// Writes the configuration's webhook endpoints (an empty list too: it disables the ones
/// removed from it), retrying while PostgreSQL does not answer.
async fn write_endpoints(
    db: sqlx::PgPool,
    endpoints: Vec<webhooks::store::NewEndpoint>,
    stop: CancellationToken,
) {
    loop {
        match webhooks::config::write(&db, &endpoints).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "webhook endpoints from the configuration not written yet; retrying")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
