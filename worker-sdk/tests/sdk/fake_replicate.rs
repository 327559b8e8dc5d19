//! A local server implementing the subset of Replicate's HTTP API a provider worker uses,
//! with the request and response shapes of its public reference
//! (<https://replicate.com/docs/reference/http>):
//!
//! - `POST /v1/predictions` `{"version", "input"}` and
//!   `POST /v1/models/{owner}/{name}/predictions` `{"input"}` answer 201 with a prediction
//!   object `{"id", "model", "version", "input", "status": "starting", "output": null,
//!   "error": null, "created_at", "urls": {"get", "cancel"}}`;
//! - `GET /v1/predictions/{id}` answers the object as it stands (`processing`, then
//!   `succeeded` with `output` a list of file URLs, or `failed` with `error`);
//! - `POST /v1/predictions/{id}/cancel` answers the object with `status: "canceled"`;
//! - a request without `Authorization: Bearer <token>` is answered 401 `{"detail": ...}`;
//! - a throttled request is answered 429 with `Retry-After` (seconds) and
//!   `{"detail": "Request was throttled. Expected available in 1 second."}`;
//! - invalid input is answered 422 `{"detail": ..., "status": 422}`.
//!
//! What a prediction does is chosen by its prompt: `ok`, `fail`, `slow` (runs 1.5 s),
//! `hang` (runs until cancelled), `invalid` (422 at create), `throttle` (the first two
//! creates are answered 429).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

pub const TOKEN: &str = "r8_test_token";

struct Pred {
    prompt: String,
    created: Instant,
    runs_for: Option<Duration>,
    canceled: bool,
    model: String,
    version: Value,
    input: Value,
}

#[derive(Default)]
struct State {
    preds: Mutex<HashMap<String, Pred>>,
    /// Every create request's body, in order.
    creates: Mutex<Vec<Value>>,
    throttled: AtomicUsize,
    unauthorized: AtomicUsize,
    next: AtomicUsize,
    base: Mutex<String>,
}

/// The running fake and what it saw.
#[derive(Clone)]
pub struct FakeReplicate {
    state: Arc<State>,
    pub base_url: String,
}

/// A small PNG standing for output `i` of prediction `id`.
pub fn output_png(id: &str, i: usize) -> Vec<u8> {
    gpuq_worker_sdk::demo::render::render_png(id, 1, i as u32, 16, 16).unwrap()
}

/// The 401 for a request without the token, if it has none.
fn refusal(req: &HttpRequest, state: &State) -> Option<HttpResponse> {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if ok {
        return None;
    }
    state.unauthorized.fetch_add(1, Ordering::SeqCst);
    Some(HttpResponse::Unauthorized().json(json!({"detail": "Invalid token.", "status": 401})))
}

fn object(state: &State, id: &str, p: &Pred) -> Value {
    let base = state.base.lock().unwrap().clone();
    let elapsed = p.created.elapsed();
    let (status, output, error) = if p.canceled {
        ("canceled", Value::Null, Value::Null)
    } else if elapsed < Duration::from_millis(100) {
        ("starting", Value::Null, Value::Null)
    } else if p.runs_for.is_none_or(|d| elapsed < d) {
        ("processing", Value::Null, Value::Null)
    } else if p.prompt == "fail" {
        (
            "failed",
            Value::Null,
            json!("NSFW content detected. Try running it again."),
        )
    } else {
        let n = p.input["num_outputs"].as_u64().unwrap_or(1) as usize;
        let urls: Vec<String> = (0..n)
            .map(|i| format!("{base}/files/{id}-{i}.png"))
            .collect();
        ("succeeded", json!(urls), Value::Null)
    };
    json!({
        "id": id, "model": p.model, "version": p.version, "input": p.input,
        "logs": "", "status": status, "output": output, "error": error,
        "created_at": "2026-11-28T12:00:00.000Z",
        "urls": {
            "get": format!("{base}/v1/predictions/{id}"),
            "cancel": format!("{base}/v1/predictions/{id}/cancel"),
        },
    })
}

async fn create(
    req: HttpRequest,
    body: web::Json<Value>,
    path: Option<web::Path<(String, String)>>,
    state: web::Data<State>,
) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let body = body.into_inner();
    state.creates.lock().unwrap().push(body.clone());
    let input = body["input"].clone();
    let prompt = input["prompt"].as_str().unwrap_or_default().to_owned();
    if prompt == "throttle" && state.throttled.load(Ordering::SeqCst) < 2 {
        state.throttled.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1"))
            .json(
                json!({"detail": "Request was throttled. Expected available in 1 second.",
                "status": 429}),
            );
    }
    if prompt == "invalid" {
        return HttpResponse::UnprocessableEntity().json(json!({
            "detail": "- input.width: Must be less than or equal to 1024", "status": 422}));
    }
    let model = match path {
        Some(p) => format!("{}/{}", p.0, p.1),
        None => "stability-ai/sdxl".into(),
    };
    let id = format!("pred{:04}", state.next.fetch_add(1, Ordering::SeqCst));
    let runs_for = match prompt.as_str() {
        "slow" => Some(Duration::from_millis(1500)),
        "hang" => None,
        _ => Some(Duration::from_millis(300)),
    };
    let p = Pred {
        prompt,
        created: Instant::now(),
        runs_for,
        canceled: false,
        model,
        version: body.get("version").cloned().unwrap_or(Value::Null),
        input,
    };
    let answer = object(&state, &id, &p);
    state.preds.lock().unwrap().insert(id, p);
    HttpResponse::Created().json(answer)
}

async fn create_by_version(
    req: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<State>,
) -> HttpResponse {
    create(req, body, None, state).await
}

async fn create_by_model(
    req: HttpRequest,
    body: web::Json<Value>,
    path: web::Path<(String, String)>,
    state: web::Data<State>,
) -> HttpResponse {
    create(req, body, Some(path), state).await
}

async fn get(req: HttpRequest, id: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let preds = state.preds.lock().unwrap();
    match preds.get(id.as_str()) {
        Some(p) => HttpResponse::Ok().json(object(&state, &id, p)),
        None => HttpResponse::NotFound().json(json!({"detail": "Not found.", "status": 404})),
    }
}

async fn cancel(req: HttpRequest, id: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let mut preds = state.preds.lock().unwrap();
    match preds.get_mut(id.as_str()) {
        Some(p) => {
            p.canceled = true;
            HttpResponse::Ok().json(object(&state, &id, p))
        }
        None => HttpResponse::NotFound().json(json!({"detail": "Not found.", "status": 404})),
    }
}

/// An output file. A request carrying a token is refused: the API token must never reach
/// whatever host an output URL names.
async fn file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    if req.headers().contains_key("authorization") {
        return HttpResponse::BadRequest().body("a token was sent to the file host");
    }
    let Some((id, rest)) = name.rsplit_once('-') else {
        return HttpResponse::NotFound().finish();
    };
    let i: usize = rest.trim_end_matches(".png").parse().unwrap_or(0);
    HttpResponse::Ok()
        .content_type("image/png")
        .body(output_png(id, i))
}

impl FakeReplicate {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let data = web::Data::from(Arc::clone(&state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        *state.base.lock().unwrap() = base_url.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/predictions", web::post().to(create_by_version))
                .route(
                    "/v1/models/{owner}/{name}/predictions",
                    web::post().to(create_by_model),
                )
                .route("/v1/predictions/{id}", web::get().to(get))
                .route("/v1/predictions/{id}/cancel", web::post().to(cancel))
                .route("/files/{name}", web::get().to(file))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { state, base_url }
    }

    /// Every create request's body.
    pub fn creates(&self) -> Vec<Value> {
        self.state.creates.lock().unwrap().clone()
    }

    /// Predictions made (creates answered 201).
    pub fn predictions(&self) -> usize {
        self.state.preds.lock().unwrap().len()
    }

    pub fn throttled(&self) -> usize {
        self.state.throttled.load(Ordering::SeqCst)
    }

    pub fn unauthorized(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }

    /// Whether prediction `id` was cancelled.
    pub fn canceled(&self, id: &str) -> bool {
        self.state
            .preds
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|p| p.canceled)
    }
}
