//! Job envelopes as the dispatcher would enqueue them, for tests that act as the dispatcher.

use gpuq_schemas::{GenerationConfig, JobEnvelope, JobId, JobType};

/// An envelope of `job_type` with the catalog's defaults, a fresh job id, a random owner,
/// seed 42 and the type's own queue, bucket, model and attempt limit. Fields are public:
/// adjust what a test needs.
pub fn envelope(job_type: JobType) -> JobEnvelope {
    let spec = job_type.spec();
    JobEnvelope {
        job_id: JobId::new(),
        job_type,
        queue: spec.queue.into(),
        prompt: "a lighthouse at dusk".into(),
        negative_prompt: None,
        config: GenerationConfig {
            steps: spec.defaults.steps,
            guidance: spec.defaults.guidance,
            width: spec.defaults.width,
            height: spec.defaults.height,
            frames: spec.defaults.frames,
            num_images: spec.defaults.num_images,
            seed: Some(42),
            reference_image: None,
            reference_strength: None,
            denoise_strength: None,
            exact_copy: false,
            enhance_prompt: spec.enhance_prompt,
        },
        user_id: uuid::Uuid::new_v4().into(),
        tenant: None,
        bucket: job_type.as_str().into(),
        model_variant: spec.model_variant.into(),
        model: None,
        loras: Vec::new(),
        vram_gb: Some(spec.vram_gb),
        attempt: 0,
        max_attempts: spec.max_attempts,
        created_at: chrono::Utc::now(),
        start_by: None,
        metadata: serde_json::json!({}),
    }
}

/// `envelope`, its metadata padded so that its JSON is about `size` bytes.
pub fn padded(mut envelope: JobEnvelope, size: usize) -> JobEnvelope {
    let base = serde_json::to_string(&envelope).map_or(0, |s| s.len());
    if size > base + 12 {
        envelope.metadata = serde_json::json!({ "pad": "x".repeat(size - base - 12) });
    }
    envelope
}
