//! The replaced apps' requests (`../shared/LEGACY.md`), exactly as they sent them: every key
//! applied (seen in the answer, the row, GET and the envelope a worker gets) or refused with
//! a 400 naming it, with nothing written.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

struct Enqueued {
    answer: Value,
    /// The raw answer text, to check numbers as they are written.
    text: String,
    /// `GET /v1/jobs/{id}`.
    got: Value,
    /// The envelope stored with the row (what the worker gets).
    envelope: Value,
}

async fn enqueue(app: &TestApp, token: &str, body: Value) -> Enqueued {
    let res = app.post_job(token, &body).await;
    assert_eq!(res.status(), 202, "{body}");
    let text = res.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    let id = answer["job"]["id"].as_str().unwrap().to_owned();
    let got: Value = app.get_job(token, &id).await.json().await.unwrap();
    let envelope: Value = sqlx::query_scalar("SELECT envelope FROM jobs WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    Enqueued {
        answer,
        text,
        got,
        envelope,
    }
}

async fn refused(app: &TestApp, token: &str, body: Value, code: &str, names: &str) {
    let before = app.job_count().await;
    let res = app.post_job(token, &body).await;
    let answer = assert_error(res, 400, code).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(names), "{message} should name {names}");
    assert_eq!(app.job_count().await, before, "nothing written for {body}");
}

#[tokio::test]
async fn the_v1_image_to_image_request_is_applied_as_the_old_client_meant_it() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let reference = format!("user-library/{user}/a.png");
    let job = enqueue(
        &app,
        &token,
        json!({"jobType": "sdxl_image_fast", "metadata": {
            "prompt": "a red fox", "reference_image": true, "reference_url": reference,
            "reference_strength": 0.6, "num_inference_steps": 30, "guidance_scale": 7}}),
    )
    .await;
    for config in [
        &job.answer["job"]["config"],
        &job.got["job"]["config"],
        &job.envelope["config"],
    ] {
        assert_eq!(config["reference_image"], reference.as_str());
        assert_eq!(config["steps"], 30);
        assert_eq!(config["guidance"], 7.0);
        assert_eq!(config["denoise_strength"], 0.4);
        assert_eq!(config["reference_strength"], 0.6);
    }
    // Numbers as sent: no f32 noise such as 0.3999999761581421.
    assert!(
        job.text.contains("\"denoise_strength\":0.4,"),
        "{}",
        job.text
    );
    assert!(
        job.text.contains("\"reference_strength\":0.6,"),
        "{}",
        job.text
    );
}

#[tokio::test]
async fn a_reference_flag_without_a_reference_is_refused_naming_reference_url() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    refused(
        &app,
        &token,
        json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "reference_image": true}}),
        "missing_reference",
        "reference_url",
    )
    .await;
}

#[tokio::test]
async fn num_inference_steps_is_steps_with_the_same_bounds() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for steps in [0, 151] {
        refused(
            &app,
            &token,
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "num_inference_steps": steps}}),
            "out_of_range",
            "num_inference_steps",
        )
        .await;
    }
    let job = enqueue(
        &app,
        &token,
        json!({"jobType": "sdxl_image_high", "metadata": {"prompt": "x", "num_inference_steps": 42}}),
    )
    .await;
    assert_eq!(job.envelope["config"]["steps"], 42);
}

#[tokio::test]
async fn older_names_are_read_as_their_current_ones() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let job = enqueue(
        &app,
        &token,
        json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x",
            "reference_image_url": format!("{user}/r.png"), "preserve_strength": 0.7,
            "userNegativePrompt": "blurry", "batch_count": 3}}),
    )
    .await;
    let env = &job.envelope;
    assert_eq!(env["config"]["reference_strength"], 0.7);
    assert_eq!(env["config"]["denoise_strength"], 0.3);
    assert_eq!(env["config"]["num_images"], 3);
    assert_eq!(env["negative_prompt"], "blurry");
    refused(
        &app,
        &token_for(Uuid::new_v4()),
        json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "preserve_strength": 2}}),
        "out_of_range",
        "preserve_strength",
    )
    .await;
}

#[tokio::test]
async fn the_original_prompt_wins_and_the_v1_extras_reach_the_worker() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let job = enqueue(
        &app,
        &token,
        json!({"jobType": "video_fast", "metadata": {"prompt": "fox, cinematic, 4k"},
            "originalPrompt": "fox", "enhancedPrompt": "fox, cinematic, 4k",
            "isPromptEnhanced": true, "selectedPresets": ["cinematic"], "contentType": "video",
            "enhancementModel": "qwen"}),
    )
    .await;
    assert_eq!(job.got["job"]["prompt"], "fox");
    assert_eq!(job.envelope["prompt"], "fox");
    let meta = &job.envelope["metadata"];
    assert_eq!(meta["enhancedPrompt"], "fox, cinematic, 4k");
    assert_eq!(meta["isPromptEnhanced"], true);
    assert_eq!(meta["selectedPresets"], json!(["cinematic"]));
    assert_eq!(job.got["job"]["metadata"]["enhancementModel"], "qwen");
}

#[tokio::test]
async fn a_key_no_version_sent_or_one_that_contradicts_the_type_is_refused_naming_it() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    refused(
        &app,
        &token,
        json!({"jobType": "video_fast", "metadata": {"prompt": "x"}, "priority": "high"}),
        "unknown_field",
        "priority",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"jobType": "video_fast", "metadata": {"prompt": "x"}, "contentType": "image"}),
        "conflicting_fields",
        "contentType",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "reference_type": "pose"}}),
        "invalid_reference_type",
        "reference_type",
    )
    .await;
    refused(
        &app,
        &token,
        json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "compel_enabled": "yes"}}),
        "invalid_flag",
        "compel_enabled",
    )
    .await;
}

#[tokio::test]
async fn a_v2_body_is_applied_and_answered_with_the_fields_v2_apps_read() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let job = enqueue(
        &app,
        &token,
        json!({"prompt": "a lighthouse", "original_prompt": "lighthouse", "job_type": "sdxl_image_high",
            "quality": "high", "format": "image", "num_images": 3, "steps": 40, "guidance_scale": 8.5,
            "seed": 7, "negative_prompt": "fog", "compel_enabled": false, "bypass_enhancement": true,
            "metadata": {"session_name": "s1"}}),
    )
    .await;
    let a = &job.answer;
    assert_eq!(a["jobId"], a["job"]["id"]);
    assert_eq!(a["status"], "queued");
    assert_eq!(a["queueName"], "sdxl_queue");
    // v1 fields too.
    assert_eq!(a["queue"], "sdxl_queue");
    assert_eq!(a["success"], true);
    let env = &job.envelope;
    assert_eq!(env["prompt"], "lighthouse");
    assert_eq!(env["negative_prompt"], "fog");
    assert_eq!(
        (
            &env["config"]["num_images"],
            &env["config"]["steps"],
            &env["config"]["guidance"],
            &env["config"]["seed"]
        ),
        (&json!(3), &json!(40), &json!(8.5), &json!(7))
    );
    assert_eq!(env["metadata"]["session_name"], "s1");
}

#[tokio::test]
async fn a_v2_body_that_contradicts_itself_or_its_type_is_refused() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let v2 = |extra: Value| {
        let mut body = json!({"prompt": "x", "job_type": "video_fast"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    refused(
        &app,
        &token,
        v2(json!({"format": "image"})),
        "conflicting_fields",
        "format",
    )
    .await;
    refused(
        &app,
        &token,
        v2(json!({"quality": "high"})),
        "conflicting_fields",
        "quality",
    )
    .await;
    refused(
        &app,
        &token,
        v2(json!({"hard_override": true})),
        "unsupported_field",
        "hard_override",
    )
    .await;
    refused(
        &app,
        &token,
        v2(json!({"metadata": {"prompt": "y"}})),
        "conflicting_fields",
        "prompt",
    )
    .await;
    refused(
        &app,
        &token,
        v2(json!({"jobType": "video_fast"})),
        "conflicting_fields",
        "jobType",
    )
    .await;
}

#[tokio::test]
async fn enhancement_is_off_when_skipped_or_copying_exactly() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let enhanced = |meta: Value| json!({"jobType": "image7b_fast_enhanced", "metadata": meta});
    let default = enqueue(&app, &token, enhanced(json!({"prompt": "x"}))).await;
    assert_eq!(default.envelope["config"]["enhance_prompt"], true);
    let skipped = enqueue(
        &app,
        &token,
        enhanced(json!({"prompt": "x", "skip_enhancement": true})),
    )
    .await;
    assert_eq!(skipped.envelope["config"]["enhance_prompt"], false);
    let copy = enqueue(
        &app,
        &token,
        enhanced(json!({"prompt": "", "exact_copy_mode": true, "reference_image": format!("{user}/r.png")})),
    )
    .await;
    assert_eq!(copy.envelope["config"]["exact_copy"], true);
    assert_eq!(copy.envelope["config"]["enhance_prompt"], false);
}

#[tokio::test]
async fn an_original_enhanced_prompt_means_modify_not_copy() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let copy = |prompt: &str| {
        json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": prompt, "exact_copy_mode": true,
            "reference_image": true, "reference_url": format!("{user}/r.png"),
            "originalEnhancedPrompt": "the same fox, sharper"}})
    };
    let job = enqueue(&app, &token, copy("the same fox")).await;
    let config = &job.envelope["config"];
    assert_eq!(config["exact_copy"], false);
    assert_eq!(config["denoise_strength"], 0.2);
    // Modify needs a prompt.
    refused(&app, &token, copy(""), "missing_prompt", "prompt").await;
}

#[tokio::test]
async fn an_older_name_and_the_current_one_must_agree() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let meta = |extra: Value| {
        let mut m = json!({"prompt": "x"});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"jobType": "sdxl_image_fast", "metadata": m})
    };
    for (extra, names) in [
        (json!({"num_images": 1, "batch_count": 3}), "batch_count"),
        (
            json!({"steps": 20, "num_inference_steps": 30}),
            "num_inference_steps",
        ),
        (
            json!({"reference_strength": 0.5, "preserve_strength": 0.6}),
            "preserve_strength",
        ),
        (
            json!({"negative_prompt": "a", "userNegativePrompt": "b"}),
            "userNegativePrompt",
        ),
    ] {
        refused(&app, &token, meta(extra), "conflicting_fields", names).await;
    }
    refused(
        &app,
        &token,
        meta(json!({"batch_count": 2})),
        "invalid_num_images",
        "num_images",
    )
    .await;
    let agreed = enqueue(
        &app,
        &token,
        meta(json!({"num_images": 3, "batch_count": 3, "steps": 25, "num_inference_steps": 25})),
    )
    .await;
    assert_eq!(agreed.envelope["config"]["num_images"], 3);
    assert_eq!(agreed.envelope["config"]["steps"], 25);
}

#[tokio::test]
async fn a_v2_null_is_not_sent_and_its_original_prompt_is_the_prompt() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let job = enqueue(
        &app,
        &token,
        json!({"job_type": "sdxl_image_fast", "prompt": "a fox, golden hour", "seed": null,
            "original_prompt": "a fox", "metadata": {"seed": 5, "originalPrompt": "kept as sent"}}),
    )
    .await;
    assert_eq!(job.envelope["config"]["seed"], 5);
    assert_eq!(job.envelope["prompt"], "a fox");
    assert_eq!(job.envelope["metadata"]["originalPrompt"], "kept as sent");
}
