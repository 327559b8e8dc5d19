//! The request shapes of the apps gpuq replaces (`../shared/LEGACY.md`), brought to the one
//! shape [`super::validate`] checks: `{ jobType, metadata, projectId?, videoId?, imageId? }`
//! with every parameter in `metadata`.
//!
//! - **v1** (`jobType`): the top-level extras the old app sent (`originalPrompt`,
//!   `enhancedPrompt`, `isPromptEnhanced`, `enhancementMetadata`, `selectedPresets`,
//!   `contentType`, `enhancementModel`) move into `metadata` under their own names, where the
//!   worker sees them; `originalPrompt` is applied as the prompt.
//! - **v2** (`job_type`): every top-level parameter moves into `metadata`; a key set both
//!   there and at the top level with different values is a 400. `quality` and `format` must
//!   agree with the job type; `hard_override: true` is refused (nothing defines it).
//!
//! Any other top-level key is a 400 naming it: a value the client sent is applied or
//! refused, never dropped. Metadata aliases (`num_inference_steps`, `preserve_strength`,
//! `userNegativePrompt`, `batch_count`, `reference_image: true` with `reference_url`) are
//! read by [`super`] itself, since they live in `metadata` in both versions.

use serde_json::{Map, Value};

use gpuq_schemas::{JobKind, JobType};

use crate::ApiError;

/// gpuq's own top-level key, in both shapes: the job's start deadline.
pub const START_WITHIN: &str = "startWithinSeconds";

/// gpuq's own fields of both versions, passed through as they are: the start deadline and a
/// job's own webhook (`webhooks::job`).
const OWN_FIELDS: [&str; 3] = [START_WITHIN, "webhook", "webhookEvents"];
/// Top-level keys of a v1 body besides `jobType` and `metadata`.
const V1_IDS: [&str; 3] = ["projectId", "videoId", "imageId"];
/// v1 top-level extras, recorded in `metadata` (`originalPrompt` also becomes the prompt).
pub const V1_EXTRAS: [&str; 7] = [
    "originalPrompt",
    "enhancedPrompt",
    "isPromptEnhanced",
    "enhancementMetadata",
    "selectedPresets",
    "contentType",
    "enhancementModel",
];
/// v2 top-level parameters, all moved into `metadata`.
const V2_FIELDS: [&str; 18] = [
    "prompt",
    "original_prompt",
    "enhanced_prompt",
    "negative_prompt",
    "num_images",
    "reference_image_url",
    "reference_strength",
    "denoise_strength",
    "seed",
    "steps",
    "guidance_scale",
    "compel_enabled",
    "compel_weights",
    "bypass_enhancement",
    "quality",
    "format",
    "model_type",
    "hard_override",
];

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// What a legacy body says at its top level besides the parameters: what it restates about
/// the job (checked against the type once it is known, [`Restated::check`]) and what it
/// asks of it.
#[derive(Debug, Default)]
pub struct Restated {
    /// v1 `originalPrompt`, v2 `original_prompt`: the prompt, when set and not blank.
    pub original_prompt: Option<String>,
    /// v2 `bypass_enhancement: true`: no prompt enhancement.
    pub bypass_enhancement: bool,
    /// v1 `contentType`, v2 `format`: `image` or `video` must be the type's kind.
    kinds: Vec<(&'static str, String)>,
    /// v2 `quality`: `fast` or `high`, as the type's name says.
    quality: Option<String>,
}

impl Restated {
    /// A 400 when the body contradicts `job_type`.
    pub fn check(&self, job_type: JobType) -> Result<(), ApiError> {
        let kind = match job_type.spec().kind {
            JobKind::Image => "image",
            JobKind::Video => "video",
        };
        for (key, v) in &self.kinds {
            if (v == "image" || v == "video") && v != kind {
                return Err(bad(
                    "conflicting_fields",
                    format!("{key} is {v:?} but {job_type} makes a {kind}"),
                ));
            }
        }
        if let Some(q) = &self.quality {
            if !(q == "fast" || q == "high") || !job_type.as_str().contains(q.as_str()) {
                return Err(bad(
                    "conflicting_fields",
                    format!("quality {q:?} does not match {job_type}"),
                ));
            }
        }
        Ok(())
    }
}

fn string_or_null(
    body: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad("invalid_field", format!("{key} must be a string"))),
    }
}

fn bool_or_null(body: &Map<String, Value>, key: &'static str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad("invalid_field", format!("{key} must be a boolean"))),
    }
}

/// The top-level legacy values' types, and what they restate about the job.
fn restated(body: &Map<String, Value>, v2: bool) -> Result<Restated, ApiError> {
    let mut out = Restated::default();
    let original = if v2 {
        "original_prompt"
    } else {
        "originalPrompt"
    };
    out.original_prompt = string_or_null(body, original)?.filter(|p| !p.trim().is_empty());
    if v2 {
        out.bypass_enhancement = bool_or_null(body, "bypass_enhancement")?.unwrap_or(false);
        if bool_or_null(body, "hard_override")? == Some(true) {
            return Err(bad(
                "unsupported_field",
                "hard_override: true is not supported (the catalog decides each type's parameters)",
            ));
        }
        if let Some(f) = string_or_null(body, "format")? {
            out.kinds.push(("format", f));
        }
        out.quality = string_or_null(body, "quality")?;
        string_or_null(body, "model_type")?;
    } else {
        for key in ["enhancedPrompt", "enhancementModel"] {
            string_or_null(body, key)?;
        }
        bool_or_null(body, "isPromptEnhanced")?;
        if let Some(c) = string_or_null(body, "contentType")? {
            out.kinds.push(("contentType", c));
        }
    }
    Ok(out)
}

/// `body` in the v1 shape, and what it restates about the job.
pub fn canonical(body: &Map<String, Value>) -> Result<(Map<String, Value>, Restated), ApiError> {
    let v2 = body.contains_key("job_type");
    if v2 && body.contains_key("jobType") {
        return Err(bad(
            "conflicting_fields",
            "send jobType (v1) or job_type (v2), not both",
        ));
    }
    let (type_key, moved): (&str, &[&str]) = if v2 {
        ("job_type", &V2_FIELDS)
    } else {
        ("jobType", &V1_EXTRAS)
    };
    let mut metadata = match body.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad("invalid_metadata", "metadata must be an object")),
    };
    let restated = restated(body, v2)?;
    let mut out = Map::new();
    for (key, value) in body {
        let key = key.as_str();
        if key == type_key {
            out.insert("jobType".into(), value.clone());
        } else if key == "metadata" || OWN_FIELDS.contains(&key) || (!v2 && V1_IDS.contains(&key)) {
            out.insert(key.into(), value.clone());
        } else if moved.contains(&key) {
            if value.is_null() {
                // Sent as null: not sent.
                continue;
            }
            // The prompt the body names is applied ([`Restated::original_prompt`]); the
            // metadata keeps its own if it has one.
            let recorded_as = if key == "original_prompt" {
                "originalPrompt"
            } else {
                key
            };
            if recorded_as == "originalPrompt" {
                metadata.entry(recorded_as).or_insert_with(|| value.clone());
                continue;
            }
            match metadata.get(key) {
                Some(there) if there != value => {
                    return Err(bad(
                        "conflicting_fields",
                        format!("{key} is set at the top level and in metadata, differently"),
                    ))
                }
                _ => {
                    metadata.insert(key.into(), value.clone());
                }
            }
        } else {
            return Err(bad(
                "unknown_field",
                format!("{key} is not a field of this request (see GET /openapi.json)"),
            ));
        }
    }
    if !metadata.is_empty() || body.contains_key("metadata") || v2 {
        out.insert("metadata".into(), Value::Object(metadata));
    }
    Ok((out, restated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> Result<Value, ApiError> {
        canonical(v.as_object().unwrap()).map(|(m, _)| Value::Object(m))
    }

    #[test]
    fn a_v2_body_moves_its_parameters_into_metadata() {
        let got = canon(
            json!({"job_type": "sdxl_image_fast", "prompt": "a fox", "steps": 30,
            "original_prompt": "fox", "metadata": {"style": "ink"}}),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a fox", "steps": 30,
                "originalPrompt": "fox", "style": "ink"}})
        );
    }

    #[test]
    fn v1_extras_are_recorded_in_metadata_and_unknown_keys_are_refused() {
        let got = canon(json!({"jobType": "video_fast", "metadata": {"prompt": "x"},
            "enhancedPrompt": "x, cinematic", "isPromptEnhanced": true, "projectId": "p"}))
        .unwrap();
        assert_eq!(
            got,
            json!({"jobType": "video_fast", "projectId": "p", "metadata": {"prompt": "x",
                "enhancedPrompt": "x, cinematic", "isPromptEnhanced": true}})
        );
        let err =
            canon(json!({"jobType": "video_fast", "metadata": {"prompt": "x"}, "prompt": "y"}))
                .unwrap_err();
        assert!(err.to_string().contains("prompt"), "{err}");
    }

    #[test]
    fn what_a_body_restates_must_agree_with_the_job_type() {
        let restated = |v: Value| canonical(v.as_object().unwrap()).unwrap().1;
        let video = JobType::VideoFast;
        assert!(
            restated(json!({"job_type": "video_fast", "format": "video", "quality": "fast"}))
                .check(video)
                .is_ok()
        );
        assert!(
            restated(json!({"job_type": "video_fast", "format": "image"}))
                .check(video)
                .is_err()
        );
        assert!(
            restated(json!({"job_type": "video_fast", "quality": "high"}))
                .check(video)
                .is_err()
        );
        assert!(
            restated(json!({"jobType": "video_fast", "contentType": "image"}))
                .check(video)
                .is_err()
        );
        assert!(canonical(
            json!({"job_type": "video_fast", "hard_override": true})
                .as_object()
                .unwrap()
        )
        .is_err());
    }

    #[test]
    fn the_same_key_twice_with_different_values_is_refused() {
        assert!(canon(
            json!({"job_type": "video_fast", "prompt": "a", "metadata": {"prompt": "b"}})
        )
        .is_err());
        assert!(canon(
            json!({"job_type": "video_fast", "prompt": "a", "metadata": {"prompt": "a"}})
        )
        .is_ok());
        assert!(canon(json!({"job_type": "video_fast", "jobType": "video_fast"})).is_err());
    }
}
