//! [`JobEnvelope`]: the job as a worker receives it from the queue.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{JobId, JobType, Tenant, UserId};

/// The final generation parameters, after defaults and image-to-image rules were applied by
/// the dispatcher. Workers use these values as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationConfig {
    /// Diffusion steps, 1..=150.
    pub steps: u32,
    /// Guidance scale, 0..=30.
    pub guidance: f64,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Video frames; 1 for images.
    pub frames: u32,
    /// Images to produce (1, 3 or 6 for SDXL; 1 otherwise).
    pub num_images: u32,
    /// Seed, 0..=4294967295; absent means the worker picks one and reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Reference image for image-to-image: a storage key under the owner's id, or an URL on
    /// an allow-listed host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_image: Option<String>,
    /// How much of the reference to keep, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_strength: Option<f64>,
    /// How much noise to add to the reference, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denoise_strength: Option<f64>,
    /// Reproduce the reference as exactly as possible (no prompt, no negative prompt).
    #[serde(default)]
    pub exact_copy: bool,
    /// Rewrite the prompt with the 7B LLM before generating.
    #[serde(default)]
    pub enhance_prompt: bool,
}

/// What a worker receives for one job. Serialized as JSON into Redis; `max_attempts` is also
/// read by the queue's Lua scripts, so it must stay a top-level integer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobEnvelope {
    /// The job.
    pub job_id: JobId,
    /// Its type.
    pub job_type: JobType,
    /// The queue it was sent to.
    pub queue: String,
    /// The prompt; empty only in exact-copy mode.
    pub prompt: String,
    /// Negative prompt, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Final generation parameters.
    pub config: GenerationConfig,
    /// The owner; every output key starts with this id.
    pub user_id: UserId,
    /// Whose fair share of the queue the job counts against, when not its owner (an
    /// organisation named by a JWT claim). Absent: the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Tenant>,
    /// The storage bucket outputs go to.
    pub bucket: String,
    /// The model to load.
    pub model_variant: String,
    /// The checkpoint the job names (`metadata.model`, from the type's allow-list): what it
    /// needs loaded, and what routed claims match a worker's warm models against (ADR
    /// 0020). Absent: the type's `model_variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The LoRAs to apply, in order (`metadata.loras`, from the type's allow-list). Routed
    /// claims prefer a worker that has them loaded too (ADR 0020).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<Lora>,
    /// GiB of GPU memory the job needs (its type's, from the catalog): a routed claim of a
    /// worker that advertises less never takes it. Absent: any worker may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_gb: Option<u32>,
    /// This delivery's attempt number, starting at 1. The queue sets it at claim time; the
    /// stored copy carries 0.
    pub attempt: u32,
    /// Deliveries allowed before the job is dead-lettered.
    pub max_attempts: u32,
    /// When the job was accepted.
    pub created_at: DateTime<Utc>,
    /// The job fails (`start_deadline_exceeded`) unless a worker starts it by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_by: Option<DateTime<Utc>>,
    /// The app's metadata, passed through untouched (project, video and image ids included).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// A LoRA adapter applied on top of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Lora {
    /// Its name, from the type's allow-list.
    pub name: String,
    /// How strongly it applies, -4..=4 (1: as trained).
    pub weight: f64,
}

impl JobEnvelope {
    /// The model the job needs loaded: the checkpoint it names, else its type's model.
    /// Routed claims match it against a worker's warm and runnable models (ADR 0020).
    pub fn model_key(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.model_variant)
    }
}
