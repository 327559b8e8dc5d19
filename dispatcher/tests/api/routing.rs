//! Model routing at the dispatcher (ADR 0020): the LoRAs a job may name, the GPU memory its
//! envelope says it needs, what workers advertise in `/admin/workers`, and how routed
//! claims went in `/metrics`.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use gpuq_queue::{ConsumerName, Route, WorkerProfile};
use gpuq_schemas::{JobType, Lora};

use crate::helpers::*;

#[tokio::test]
async fn loras_from_the_types_allow_list_travel_in_the_envelope_and_anything_else_is_a_400_naming_it(
) {
    let app = spawn_app_with(|s| {
        let list = vec!["detail-tweaker".into(), "film-grain".into()];
        s.enqueue.loras.insert(JobType::SdxlImageFast, list);
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let body = |loras: Value| json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a fox", "loras": loras}});
    for (loras, says) in [
        (json!([{"name": "evil", "weight": 1}]), "\"evil\""),
        (json!([{"weight": 1}]), "(missing)"),
        (json!([{"name": "film-grain", "weight": 9}]), "weight"),
        (json!([{"name": "film-grain", "weight": "1"}]), "weight"),
        (
            json!([{"name": "film-grain"}, {"name": "film-grain"}]),
            "twice",
        ),
        (json!(["film-grain"]), "object"),
        (json!("film-grain"), "list"),
        (json!(vec![json!({"name": "film-grain"}); 9]), "at most 8"),
    ] {
        let res = app.post_job(&token, &body(loras.clone())).await;
        let err = assert_error(res, 400, "invalid_lora").await;
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{loras}: {message}");
    }
    assert_eq!(app.job_count().await, 0, "nothing written");

    let good = json!([{"name": "film-grain", "weight": 0.6}, {"name": "detail-tweaker"}]);
    assert_eq!(app.post_job(&token, &body(good)).await.status(), 202);
    let q = app.queue("sdxl_queue").await;
    let claimed = q.claim(&ConsumerName::unique("gpu"), 1).await.unwrap();
    let env = claimed[0].envelope().unwrap();
    assert_eq!(
        env.loras,
        [
            Lora {
                name: "film-grain".into(),
                weight: 0.6
            },
            Lora {
                name: "detail-tweaker".into(),
                weight: 1.0
            }
        ]
    );
    assert_eq!(env.vram_gb, Some(JobType::SdxlImageFast.spec().vram_gb));
}

#[tokio::test]
async fn admins_see_what_each_worker_advertises_and_metrics_count_warm_hits_and_model_loads() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for _ in 0..2 {
        app.post_job(&token, &job_body("sdxl_image_fast", "x"))
            .await;
    }
    let q = app.queue("sdxl_queue").await;
    let (routed, plain) = (ConsumerName::unique("gpu"), ConsumerName::unique("old"));
    let route = Route {
        warm: vec!["lustify_sdxl".into()],
        runnable: None,
        max_wait: Duration::from_secs(60),
        vram_gb: Some(24),
    };
    q.claim_routed(&routed, 1, None, Some(&route))
        .await
        .unwrap();
    let cold = Route {
        warm: Vec::new(),
        ..route
    };
    q.claim_routed(&plain, 1, None, Some(&cold)).await.unwrap();
    let profile = WorkerProfile {
        gpu: Some("NVIDIA L4".into()),
        vram_gb: Some(24),
        slots: 1,
        loaded: vec!["lustify_sdxl".into()],
        runnable: None,
        loads: 1,
    };
    q.advertise(&routed, &profile, Duration::from_secs(30))
        .await
        .unwrap();

    let body: Value = app.admin_get("/admin/workers").await.json().await.unwrap();
    let worker = |name: &ConsumerName| {
        body["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["consumer"] == name.as_str())
            .unwrap()
            .clone()
    };
    let shown = worker(&routed)["profile"].clone();
    assert_eq!(
        (
            &shown["gpu"],
            &shown["vramGb"],
            &shown["loaded"][0],
            &shown["modelLoads"]
        ),
        (
            &json!("NVIDIA L4"),
            &json!(24),
            &json!("lustify_sdxl"),
            &json!(1)
        )
    );
    assert!(worker(&plain)["profile"].is_null(), "it advertises nothing");

    let text = app.metrics_text().await;
    for needle in [
        "gpuq_queue_routed_claims_total{queue=\"sdxl_queue\",outcome=\"warm_hit\"} 1",
        "gpuq_queue_routed_claims_total{queue=\"sdxl_queue\",outcome=\"model_load\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
