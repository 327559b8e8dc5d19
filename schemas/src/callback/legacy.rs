//! The replaced workers' callback shapes (`../shared/LEGACY.md`) and what gpuq records from
//! them: per-output seeds (explicit, or the batch's base seed + the output's index), width,
//! height and duration into their columns, the generation time, the worker id, and whether a
//! failure was transient. Unknown fields are tolerated: these workers cannot be changed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{CallbackError, CallbackShape, CallbackStatus, OutputAsset, ParsedCallback, Shape};
use crate::{JobId, JobKind};

/// Keys only the canonical shape has.
const CANONICAL_KEYS: [&str; 5] = ["workerId", "attempt", "fence", "outputs", "progress"];
/// Keys of legacy A (v1-early).
const CAMEL_KEYS: [&str; 5] = [
    "filePath",
    "outputUrl",
    "imageUrls",
    "errorMessage",
    "enhancedPrompt",
];

/// Every key a `jobId` body of legacy B (v2) may have.
const V2_KEYS: [&str; 9] = [
    "jobId",
    "status",
    "assets",
    "error_message",
    "errorMessage",
    "error",
    "completedAt",
    "worker_id",
    "metadata",
];

/// The shape to read `map` as: `jobId` with a key only the canonical shape has (or an
/// `error` object) → canonical; else `job_id` or `assets` → legacy B (unknown keys
/// tolerated); `jobId` with
/// a legacy A key → legacy A; with v2's keys only (`{jobId, status}`, `{jobId, status,
/// error: "..."}`) → legacy B; with any other key → canonical, whose strict reading names
/// it (a typo in a report is a 400, never a report read as something else).
/// `None`: no job id at all.
pub(super) fn shape_of(map: &Map<String, Value>) -> Option<Shape> {
    // First: a body with a canonical key is canonical whatever else it has, so it keeps
    // its fence (read as legacy, a stale attempt would pass for the current holder).
    let canonical = CANONICAL_KEYS.iter().any(|k| map.contains_key(*k))
        || map.get("error").is_some_and(Value::is_object);
    if canonical && map.contains_key("jobId") {
        return Some(Shape::Canonical);
    }
    if map.contains_key("job_id") || map.contains_key("assets") {
        return Some(Shape::LegacySnake);
    }
    if !map.contains_key("jobId") {
        return None;
    }
    Some(if canonical {
        Shape::Canonical
    } else if CAMEL_KEYS.iter().any(|k| map.contains_key(*k)) {
        Shape::LegacyCamel
    } else if map.keys().all(|k| V2_KEYS.contains(&k.as_str())) {
        Shape::LegacySnake
    } else {
        Shape::Canonical
    })
}

/// Legacy A: the camelCase shape with `filePath` / `outputUrl` / `imageUrls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyCamelCallback {
    /// The job.
    pub job_id: JobId,
    /// `processing`, `completed` or `failed`.
    pub status: CallbackStatus,
    /// One output path.
    #[serde(default)]
    pub file_path: Option<String>,
    /// One output URL.
    #[serde(default)]
    pub output_url: Option<String>,
    /// Several output URLs or paths, in order.
    #[serde(default)]
    pub image_urls: Option<Vec<String>>,
    /// Failure reason.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The enhanced prompt.
    #[serde(default)]
    pub enhanced_prompt: Option<String>,
}

/// One entry of legacy B's `assets`: a bare path or an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum LegacyAsset {
    /// A path or URL.
    Path(String),
    /// A described asset.
    Object(LegacyAssetObject),
}

/// The object form of a legacy B asset (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LegacyAssetObject {
    /// `image` or `video`.
    #[serde(rename = "type")]
    pub kind: JobKind,
    /// Path or URL.
    pub url: String,
    /// Thumbnail path or URL.
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    /// `width`, `height`, `seed`, `duration`, `format`, `asset_index`, ...: the numbers
    /// with a column go there, the whole object into the row's metadata.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// Legacy B: `{job_id | jobId, status, assets, ...}` (v1 and v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LegacySnakeCallback {
    /// The job.
    #[serde(alias = "jobId")]
    pub job_id: JobId,
    /// `processing`, `completed` or `failed`.
    pub status: CallbackStatus,
    /// Outputs, in order.
    #[serde(default)]
    pub assets: Vec<LegacyAsset>,
    /// Failure reason (v2 also `errorMessage`, or `error` as a string).
    #[serde(default, alias = "errorMessage")]
    pub error_message: Option<String>,
    /// v2's other name for the failure reason.
    #[serde(default)]
    pub error: Option<String>,
    /// The reporting worker (v2).
    #[serde(default)]
    pub worker_id: Option<String>,
    /// `seed` (the batch's base seed), `generation_time`, `final_prompt`, `worker_id`,
    /// `error_type`, ...
    #[serde(default)]
    pub metadata: Option<Value>,
}

fn asset(path: String) -> OutputAsset {
    OutputAsset {
        kind: None,
        path,
        thumbnail_path: None,
        seed: None,
        duration_seconds: None,
        width: None,
        height: None,
        metadata: Value::Null,
    }
}

/// Whether a legacy failure looks transient (worth another attempt): its `error_type` or
/// message names running out of memory, a timeout, a connection or download error, or a
/// 502/503/504 answer. Whole words and phrases only: "room" is no "oom", "step 1503" no
/// HTTP status.
pub fn transient(error_type: Option<&str>, message: &str) -> bool {
    const WORDS: [&str; 9] = [
        "oom",
        "outofmemoryerror",
        "timeout",
        "timeouterror",
        "readtimeout",
        "connecttimeout",
        "connectionerror",
        "downloaderror",
        "timedout",
    ];
    const PHRASES: [&str; 11] = [
        "out of memory",
        "timed out",
        "connection reset",
        "connection refused",
        "connection aborted",
        "connection error",
        "temporarily unavailable",
        "service unavailable",
        "failed to download",
        "download failed",
        "bad gateway",
    ];
    let text = format!("{} {}", error_type.unwrap_or_default(), message).to_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let http_status = words
        .windows(2)
        .any(|w| matches!(w[0], "http" | "status") && matches!(w[1], "502" | "503" | "504"));
    http_status
        || words.iter().any(|w| WORDS.contains(w))
        || PHRASES.iter().any(|p| text.contains(p))
}

fn legacy_error(
    status: CallbackStatus,
    message: Option<String>,
    error_type: Option<&str>,
) -> Option<CallbackError> {
    let message = match (status, message) {
        (_, Some(message)) => message,
        (CallbackStatus::Failed, None) => "worker reported failure without a message".into(),
        _ => return None,
    };
    Some(CallbackError {
        retryable: transient(error_type, &message),
        message,
        code: None,
    })
}

impl From<LegacyCamelCallback> for ParsedCallback {
    fn from(p: LegacyCamelCallback) -> Self {
        // imageUrls wins when present; otherwise the single path (filePath before outputUrl).
        let outputs = match (p.image_urls, p.file_path, p.output_url) {
            (Some(urls), _, _) if !urls.is_empty() => urls.into_iter().map(asset).collect(),
            (_, Some(path), _) | (_, None, Some(path)) => vec![asset(path)],
            _ => Vec::new(),
        };
        Self {
            job_id: p.job_id,
            status: p.status,
            shape: CallbackShape::Legacy,
            worker_id: None,
            attempt: None,
            fence: None,
            outputs,
            error: legacy_error(p.status, p.error_message, None),
            enhanced_prompt: p.enhanced_prompt,
            progress: None,
            generation_seconds: None,
            gpu: None,
        }
    }
}

fn number(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| v.get(*k)?.as_f64())
}

fn whole(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

/// The seed of output `index`: its own, or the batch's base seed + `index` (seeds are
/// 32-bit; one past that has no seed rather than a wrong one).
fn seed_of(own: Option<u64>, base: Option<u64>, index: usize) -> Option<u64> {
    own.or_else(|| base?.checked_add(index as u64))
        .filter(|s| *s <= u64::from(u32::MAX))
}

fn described(o: LegacyAssetObject, base_seed: Option<u64>, index: usize) -> OutputAsset {
    let meta = o.metadata.unwrap_or(Value::Null);
    let dimension = |key| whole(&meta, key).and_then(|n| u32::try_from(n).ok());
    OutputAsset {
        kind: Some(o.kind),
        thumbnail_path: o.thumbnail_url,
        seed: seed_of(whole(&meta, "seed"), base_seed, index),
        width: dimension("width"),
        height: dimension("height"),
        duration_seconds: number(&meta, &["duration", "duration_seconds"])
            .filter(|d| d.is_finite() && *d >= 0.0),
        metadata: meta,
        ..asset(o.url)
    }
}

impl From<LegacySnakeCallback> for ParsedCallback {
    fn from(p: LegacySnakeCallback) -> Self {
        let meta = p.metadata.unwrap_or(Value::Null);
        let base_seed = whole(&meta, "seed");
        let outputs = p
            .assets
            .into_iter()
            .enumerate()
            .map(|(index, a)| match a {
                LegacyAsset::Path(path) => OutputAsset {
                    seed: seed_of(None, base_seed, index),
                    ..asset(path)
                },
                LegacyAsset::Object(o) => described(o, base_seed, index),
            })
            .collect();
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut error = legacy_error(
            p.status,
            p.error_message.or(p.error),
            meta.get("error_type").and_then(Value::as_str),
        );
        if let (Some(e), Some(true)) = (
            error.as_mut(),
            meta.get("retryable").and_then(Value::as_bool),
        ) {
            e.retryable = true;
        }
        Self {
            job_id: p.job_id,
            status: p.status,
            shape: CallbackShape::Legacy,
            attempt: None,
            fence: None,
            worker_id: p.worker_id.or_else(|| text("worker_id")),
            outputs,
            error,
            enhanced_prompt: text("final_prompt").or_else(|| text("enhanced_prompt")),
            progress: None,
            generation_seconds: number(&meta, &["generation_time"])
                .filter(|t| t.is_finite() && *t >= 0.0),
            gpu: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_causes_are_whole_words_or_phrases() {
        for t in [
            "CUDA out of memory",
            "torch.cuda.OutOfMemoryError: tried to allocate",
            "OOM while decoding",
            "ReadTimeout",
            "request timed out after 30s",
            "Connection reset by peer",
            "failed to download reference image",
            "HTTP 503 from storage",
        ] {
            assert!(transient(None, t), "{t}");
        }
        assert!(transient(Some("TimeoutError"), "x"));
        assert!(!transient(None, "a room full of mushrooms in bloom"));
        assert!(!transient(None, "denoising step 1503 diverged"));
        assert!(!transient(None, "model unavailable"));
        assert!(!transient(None, "prompt refused by the safety filter"));
    }

    #[test]
    fn a_canonical_report_with_assets_keeps_its_fence() {
        let body = serde_json::json!({"jobId": "x", "status": "completed", "workerId": "w",
            "attempt": 1, "fence": "ab", "assets": []});
        assert!(matches!(
            shape_of(body.as_object().unwrap()),
            Some(Shape::Canonical)
        ));
    }
}
