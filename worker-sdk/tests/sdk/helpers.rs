//! Test helpers: queues in random namespaces on the real Redis, a callback receiver that
//! verifies signatures, and a worker builder with short timings.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use gpuq_queue::{EnqueueOptions, EnqueueOutcome, Queue, QueueConfig, RedisTarget};
use gpuq_schemas::signature::{verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use gpuq_schemas::{CallbackPayload, CallbackStatus, JobEnvelope, JobId, QueueName};
pub use gpuq_service::testkit::{envelope, namespace, redis_url};
use gpuq_worker_sdk::{CallbackRetry, CancellationToken, RedisBackoff, Worker, WorkerBuilder};

pub const SECRET: &str = "test-callback-secret";

/// A queue handle on `url` under `ns`.
pub async fn open_queue(url: &str, ns: &str, name: &str) -> Queue {
    let target = RedisTarget::open(url).unwrap();
    let conn = gpuq_queue::connect(&target)
        .await
        .expect("Redis must be running");
    Queue::new(
        target,
        conn,
        ns,
        QueueName::parse(name).unwrap(),
        QueueConfig::default(),
    )
}

pub async fn enqueue(q: &Queue, env: &JobEnvelope) -> JobId {
    let out = q.enqueue(env, &EnqueueOptions::default()).await.unwrap();
    assert!(matches!(out, EnqueueOutcome::Enqueued { .. }), "{out:?}");
    env.job_id
}

/// Whether Redis still holds `job` in any state.
pub async fn in_redis(q: &Queue, job: JobId) -> bool {
    let target = RedisTarget::open(&redis_url()).unwrap();
    let mut conn = gpuq_queue::connect(&target).await.unwrap();
    redis::cmd("HEXISTS")
        .arg(q.keys().jobs())
        .arg(job.to_string())
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[derive(Default)]
struct ReceiverState {
    accepted: Mutex<Vec<CallbackPayload>>,
    unavailable_left: AtomicUsize,
    answered_503: AtomicUsize,
    bad_signatures: AtomicUsize,
    probes: AtomicUsize,
    reject_completed: bool,
    /// Answer 401 to everything, probes included (a rotated secret).
    refusing: AtomicBool,
    refused: AtomicUsize,
}

/// A callback service stand-in: verifies every signature and records accepted payloads.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<ReceiverState>,
    pub url: String,
}

async fn callback(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if state.refusing.load(Ordering::SeqCst) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Unauthorized().finish();
    }
    let now = chrono::Utc::now().timestamp();
    let signed = verify(
        &[SECRET],
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
        now,
        300,
    );
    if signed.is_err() {
        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Unauthorized().finish();
    }
    if gpuq_schemas::callback::is_probe(&body) {
        state.probes.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Ok().json(serde_json::json!({"success": true, "probe": true}));
    }
    let payload: CallbackPayload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(_) => return HttpResponse::BadRequest().finish(),
    };
    if payload.status == CallbackStatus::Completed {
        if state
            .unavailable_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            state.answered_503.fetch_add(1, Ordering::SeqCst);
            return HttpResponse::ServiceUnavailable().finish();
        }
        if state.reject_completed {
            return HttpResponse::UnprocessableEntity().body("no such bucket");
        }
    }
    state.accepted.lock().unwrap().push(payload);
    HttpResponse::Ok().json(serde_json::json!({"success": true}))
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_with(0, false).await
    }

    /// Answers 503 to the first `unavailable` completed reports; with `reject_completed`,
    /// 422 to every completed report.
    pub async fn start_with(unavailable: usize, reject_completed: bool) -> Self {
        let state = Arc::new(ReceiverState {
            unavailable_left: AtomicUsize::new(unavailable),
            reject_completed,
            ..ReceiverState::default()
        });
        let data = web::Data::from(Arc::clone(&state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/callback", web::post().to(callback))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            state,
            url: format!("http://127.0.0.1:{port}/v1/callback"),
        }
    }

    pub fn payloads(&self, job: JobId) -> Vec<CallbackPayload> {
        let all = self.state.accepted.lock().unwrap();
        all.iter().filter(|p| p.job_id == job).cloned().collect()
    }

    pub fn count(&self, job: JobId, status: CallbackStatus) -> usize {
        self.payloads(job)
            .iter()
            .filter(|p| p.status == status)
            .count()
    }

    pub fn answered_503(&self) -> usize {
        self.state.answered_503.load(Ordering::SeqCst)
    }

    pub fn bad_signatures(&self) -> usize {
        self.state.bad_signatures.load(Ordering::SeqCst)
    }

    /// Signed probes answered.
    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    /// From now on, answers 401 to everything (`true`), or serves again (`false`).
    pub fn refuse(&self, on: bool) {
        self.state.refusing.store(on, Ordering::SeqCst);
    }

    /// Requests answered 401 while refusing.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`, without the route.
    pub fn base_url(&self) -> String {
        self.url.trim_end_matches("/v1/callback").to_owned()
    }

    /// Waits for the first accepted report of `job` with `status`.
    pub async fn wait_for(
        &self,
        job: JobId,
        status: CallbackStatus,
        within: Duration,
    ) -> CallbackPayload {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(p) = self.payloads(job).into_iter().find(|p| p.status == status) {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "no {status:?} report for {job} within {within:?}; got {:?}",
                self.payloads(job)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A builder with test timings: 400 ms leases renewed every 100 ms, fast retries.
pub fn builder(url: &str, ns: &str, queue: &str, receiver: &Receiver) -> WorkerBuilder {
    Worker::builder()
        .redis_url(url)
        .namespace(ns)
        .queue(queue)
        .callback_url(receiver.url.clone())
        .callback_secret(SECRET.to_string().into())
        .lease(Duration::from_millis(400))
        .heartbeat_every(Duration::from_millis(100))
        .claim_wait(Duration::from_millis(200))
        .cancel_grace(Duration::from_millis(300))
        .progress_interval(Duration::from_millis(10))
        .callback_retry(CallbackRetry {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            max_retries: 10,
            request_timeout: Duration::from_secs(5),
        })
        .redis_backoff(RedisBackoff {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
        })
}

/// Runs `worker` on its own task; cancel the token to stop it.
pub fn spawn(worker: Worker) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let t = token.clone();
    let handle = tokio::spawn(async move { worker.run(t).await.unwrap() });
    (token, handle)
}

/// Reaps `ns`'s queue from a thread of its own (as the dispatcher would) for `period`,
/// and returns every job it found with an expired lease.
pub fn reap_in_thread(
    ns: &str,
    queue: &str,
    period: Duration,
) -> std::thread::JoinHandle<Vec<JobId>> {
    let (ns, queue) = (ns.to_owned(), queue.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let q = open_queue(&redis_url(), &ns, &queue).await;
            let until = tokio::time::Instant::now() + period;
            let mut expired = Vec::new();
            while tokio::time::Instant::now() < until {
                let r = q.reap_once().await.unwrap();
                expired.extend(r.requeued);
                expired.extend(r.dead);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            expired
        })
    })
}

/// Polls `check` every 50 ms for up to 10 s; panics naming `what` if it never holds.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}
