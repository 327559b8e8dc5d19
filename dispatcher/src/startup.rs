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
}

impl Application {
    /// Connects, migrates (unless disabled), binds the listener and prepares the server.
    /// Nothing is served until [`Self::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = connection_pool(&settings.database)?;
        if settings.database.migrate {
            MIGRATOR.run(&db).await?;
        }
        // An empty list too: it disables the configured endpoints that were removed.
        webhooks::config::apply(&db, &settings.webhooks.endpoints).await?;
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
