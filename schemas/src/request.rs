//! [`EnqueueRequest`]: the body apps POST to `/v1/jobs`, in the camelCase they send today.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The enqueue body. Kept loose on purpose: the dispatcher validates every field itself so
/// that each rejection names the field and the rule, which serde's errors cannot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnqueueRequest {
    /// One of the catalog's job types.
    pub job_type: String,
    /// Generation parameters (`prompt`, `num_images`, `seed`, ...), snake_case inside.
    #[serde(default)]
    pub metadata: EnqueueMetadata,
    /// The app's project, passed through.
    #[serde(default)]
    pub project_id: Option<String>,
    /// The app's video record, passed through.
    #[serde(default)]
    pub video_id: Option<String>,
    /// The app's image record, passed through.
    #[serde(default)]
    pub image_id: Option<String>,
}

/// `metadata` of an enqueue request: a JSON object. Known keys are `prompt`,
/// `negative_prompt`, `num_images`, `seed`, `steps`, `guidance` (or `guidance_scale`),
/// `reference_image` (or `reference_image_url`), `reference_strength`, `denoise_strength`
/// and `exact_copy_mode`; everything else is kept and passed to the worker.
pub type EnqueueMetadata = serde_json::Map<String, serde_json::Value>;
