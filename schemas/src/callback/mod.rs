//! Callback payloads: what workers POST to the callback service.
//!
//! Three shapes are accepted and turned into one [`ParsedCallback`]:
//! - the canonical shape the SDK sends ([`CallbackPayload`], camelCase, has `outputs`);
//! - legacy A, `{jobId, status, filePath?, outputUrl?, imageUrls?, errorMessage?, enhancedPrompt?}`;
//! - legacy B, `{job_id | jobId, status, assets: [..], error_message?, metadata?, ...}`.
//!
//! The canonical shape refuses unknown fields, so a typo is a 400 naming the field rather
//! than a silently dropped value; the legacy shapes ([`legacy`]) tolerate them, as the
//! workers that send them cannot be changed.

mod legacy;

pub use legacy::{LegacyAsset, LegacyAssetObject, LegacyCamelCallback, LegacySnakeCallback};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JobId, JobKind};

/// What a callback reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallbackStatus {
    /// The worker started the job.
    Processing,
    /// A progress update; changes no row, only feeds the event stream.
    Progress,
    /// The job produced its outputs.
    Completed,
    /// The job failed; see `error.retryable`.
    Failed,
}

/// One produced file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputAsset {
    /// Image or video; absent means "what the job type produces".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    /// Where the file is: a bucket-relative key, a bucket-prefixed path, a storage URL path
    /// or a full URL on the storage host. The callback service normalizes it.
    pub path: String,
    /// A thumbnail, same forms as `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_path: Option<String>,
    /// The seed that produced this output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Video length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Pixel width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixel height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Anything else the worker wants recorded with the row.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallbackError {
    /// Human-readable reason, stored in `jobs.error_message`.
    pub message: String,
    /// Whether another attempt may succeed (out of memory, a flaky download) or not (an
    /// invalid prompt).
    #[serde(default)]
    pub retryable: bool,
    /// Why, for machines, when the SDK itself ended the attempt; stored in
    /// `jobs.error_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<FailureCode>,
}

/// A machine-readable reason for a failed attempt that the worker SDK decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The handler ran past its type's run limit and was stopped.
    ExecutionTimeout,
}

impl FailureCode {
    /// The wire name, as stored in `jobs.error_code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExecutionTimeout => "execution_timeout",
        }
    }
}

/// A progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Progress {
    /// 0.0 to 1.0.
    pub fraction: f64,
    /// What the worker is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The canonical callback, sent by the SDK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallbackPayload {
    /// The job reported on.
    pub job_id: JobId,
    /// What happened.
    pub status: CallbackStatus,
    /// The reporting worker's consumer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The delivery attempt the report belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The claim's fence token (with `attempt`, the delivery's fence; `docs/protocol.md`).
    /// A report without the current fence changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// Produced files, in output order (index = position).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputAsset>,
    /// Failure details, with `status: failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallbackError>,
    /// The prompt after 7B enhancement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced_prompt: Option<String>,
    /// Progress, with `status: progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The GPU the attempt runs on (e.g. `NVIDIA A100-SXM4-80GB`), with `processing` and
    /// the report that ends the attempt: metering records it with the attempt's GPU-seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub gpu: Option<String>,
}

/// The longest GPU name a report may carry, in characters.
pub const MAX_GPU_NAME: usize = 128;

/// A callback in any accepted shape, normalized. A legacy failure is retryable when its
/// `error_type` or message shows a transient cause (out of memory, a timeout, a connection
/// or download error; [`legacy::transient`]); old workers never said otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCallback {
    /// The job.
    pub job_id: JobId,
    /// What happened.
    pub status: CallbackStatus,
    /// Which shape it came in: canonical reports must carry the delivery's fence; legacy
    /// shapes have none and count only for the job's current claim.
    pub shape: CallbackShape,
    /// The reporting worker, when known.
    pub worker_id: Option<String>,
    /// The delivery attempt (canonical shape).
    pub attempt: Option<u32>,
    /// The claim's fence token (canonical shape).
    pub fence: Option<String>,
    /// Produced files, in order.
    pub outputs: Vec<OutputAsset>,
    /// Failure details.
    pub error: Option<CallbackError>,
    /// The enhanced prompt.
    pub enhanced_prompt: Option<String>,
    /// Progress.
    pub progress: Option<Progress>,
    /// GPU time of the generation the worker reported, seconds (legacy `generation_time`).
    pub generation_seconds: Option<f64>,
    /// The GPU the attempt ran on (canonical shape).
    pub gpu: Option<String>,
}

/// The shape a callback came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackShape {
    /// [`CallbackPayload`], sent by the SDK and protocol-following workers.
    Canonical,
    /// One of the replaced workers' shapes (`../shared/LEGACY.md`).
    Legacy,
}

/// The body of a probe: a worker checks its callback URL and secret at start-up by POSTing
/// it signed, exactly as a report. The service verifies the signature and answers
/// `{"success": true, "probe": true}` without touching any job.
pub const PROBE_BODY: &[u8] = br#"{"probe":true}"#;

/// Whether `body` is a probe (`{"probe": true}`, whatever the spacing).
pub fn is_probe(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        probe: bool,
    }
    body.len() <= 64
        && matches!(
            serde_json::from_slice::<Probe>(body),
            Ok(Probe { probe: true })
        )
}

/// Why a body is not a callback. The message names the shape and the field.
#[derive(Debug, thiserror::Error)]
pub enum CallbackParseError {
    /// Not JSON, or not an object.
    #[error("callback body must be a JSON object: {0}")]
    NotAnObject(String),
    /// Neither `jobId` nor `job_id`.
    #[error("callback must carry `jobId` (or `job_id`)")]
    NoJobId,
    /// A string holds U+0000, which PostgreSQL cannot store.
    #[error("callback{0} contains U+0000 (NUL), which cannot be stored")]
    Unstorable(String),
    /// A field is missing, unknown or of the wrong type.
    #[error("invalid {shape} callback: {reason}")]
    Invalid {
        /// Which shape the body was read as.
        shape: &'static str,
        /// serde's description, which names the field.
        reason: String,
    },
}

impl ParsedCallback {
    /// Parses a raw body in any accepted shape.
    pub fn from_slice(body: &[u8]) -> Result<Self, CallbackParseError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| CallbackParseError::NotAnObject(e.to_string()))?;
        let Value::Object(map) = &value else {
            return Err(CallbackParseError::NotAnObject("not an object".into()));
        };
        if let Some(at) = crate::storable::nul_in_map(map) {
            return Err(CallbackParseError::Unstorable(at));
        }
        let invalid = |shape| {
            move |e: serde_json::Error| CallbackParseError::Invalid {
                shape,
                reason: e.to_string(),
            }
        };
        match legacy::shape_of(map) {
            Some(Shape::Canonical) => {
                let p: CallbackPayload =
                    serde_json::from_value(value).map_err(invalid("canonical"))?;
                if p.gpu
                    .as_ref()
                    .is_some_and(|g| g.is_empty() || g.chars().count() > MAX_GPU_NAME)
                {
                    return Err(CallbackParseError::Invalid {
                        shape: "canonical",
                        reason: format!("gpu must be 1 to {MAX_GPU_NAME} characters"),
                    });
                }
                Ok(p.into())
            }
            Some(Shape::LegacyCamel) => {
                let p: LegacyCamelCallback =
                    serde_json::from_value(value).map_err(invalid("legacy jobId/filePath"))?;
                Ok(p.into())
            }
            Some(Shape::LegacySnake) => {
                let p: LegacySnakeCallback =
                    serde_json::from_value(value).map_err(invalid("legacy job_id/assets"))?;
                Ok(p.into())
            }
            None => Err(CallbackParseError::NoJobId),
        }
    }
}

/// Which struct a body is read as ([`legacy::shape_of`]).
enum Shape {
    Canonical,
    LegacyCamel,
    LegacySnake,
}

impl From<CallbackPayload> for ParsedCallback {
    fn from(p: CallbackPayload) -> Self {
        Self {
            job_id: p.job_id,
            status: p.status,
            shape: CallbackShape::Canonical,
            worker_id: p.worker_id,
            attempt: p.attempt,
            fence: p.fence,
            outputs: p.outputs,
            error: p.error,
            enhanced_prompt: p.enhanced_prompt,
            progress: p.progress,
            generation_seconds: None,
            gpu: p.gpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: &str = "0192f0c4-1111-7abc-8def-000000000001";

    fn parse(v: Value) -> Result<ParsedCallback, CallbackParseError> {
        ParsedCallback::from_slice(v.to_string().as_bytes())
    }

    #[test]
    fn canonical_shape_parses() {
        let p = parse(serde_json::json!({
            "jobId": J, "status": "completed", "workerId": "w1", "attempt": 1,
            "outputs": [{"path": "u/a.png", "seed": 7}, {"path": "u/b.png"}],
            "enhancedPrompt": "better"
        }))
        .unwrap();
        assert_eq!(p.status, CallbackStatus::Completed);
        assert_eq!(p.outputs.len(), 2);
        assert_eq!(p.outputs[0].seed, Some(7));
        assert_eq!(p.worker_id.as_deref(), Some("w1"));
        assert_eq!(p.enhanced_prompt.as_deref(), Some("better"));
    }

    #[test]
    fn legacy_camel_prefers_image_urls_then_file_path() {
        let p = parse(serde_json::json!({"jobId": J, "status": "completed", "imageUrls": ["a", "b", "c"], "filePath": "x"})).unwrap();
        assert_eq!(
            p.outputs
                .iter()
                .map(|o| o.path.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let p = parse(serde_json::json!({"jobId": J, "status": "completed", "filePath": "x", "outputUrl": "y"})).unwrap();
        assert_eq!(p.outputs[0].path, "x");
        // A transient cause is retried; anything else is not.
        let p = parse(serde_json::json!({"jobId": J, "status": "failed", "errorMessage": "CUDA out of memory"}))
            .unwrap();
        assert_eq!(
            p.error.unwrap(),
            CallbackError {
                message: "CUDA out of memory".into(),
                retryable: true,
                code: None,
            }
        );
        let p = parse(
            serde_json::json!({"jobId": J, "status": "failed", "errorMessage": "bad checkpoint"}),
        )
        .unwrap();
        assert!(!p.error.unwrap().retryable);
    }

    #[test]
    fn legacy_snake_accepts_strings_and_objects() {
        let p = parse(serde_json::json!({
            "job_id": J, "status": "completed",
            "assets": ["u/a.png", {"type": "video", "url": "u/v.mp4", "thumbnail_url": "u/t.png"}],
            "metadata": {"seed": 42, "enhanced_prompt": "e"}
        }))
        .unwrap();
        assert_eq!(p.outputs[0].path, "u/a.png");
        assert_eq!(p.outputs[1].kind, Some(JobKind::Video));
        assert_eq!(p.outputs[1].thumbnail_path.as_deref(), Some("u/t.png"));
        assert_eq!(p.outputs[0].seed, Some(42));
        assert_eq!(p.enhanced_prompt.as_deref(), Some("e"));
    }

    #[test]
    fn failed_without_message_still_has_an_error() {
        let p = parse(serde_json::json!({"job_id": J, "status": "failed"})).unwrap();
        assert!(p.error.is_some());
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases = [
            (serde_json::json!([1, 2]), "JSON object"),
            (serde_json::json!({"status": "completed"}), "jobId"),
            (
                serde_json::json!({"jobId": "nope", "status": "completed"}),
                "UUID",
            ),
            (
                serde_json::json!({"jobId": J, "status": "done"}),
                "unknown variant `done`",
            ),
            (
                serde_json::json!({"jobId": J, "status": "completed", "outputz": []}),
                "unknown field `outputz`",
            ),
            (
                serde_json::json!({"job_id": J, "status": "completed", "assets": [{"url": "x"}]}),
                "legacy job_id/assets",
            ),
        ];
        for (body, needle) in cases {
            let err = parse(body.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
        assert!(ParsedCallback::from_slice(b"{not json").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes: a parse result or a clear error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = ParsedCallback::from_slice(&body);
        }

        /// Callback-shaped JSON with arbitrary values: never a panic, and a parsed
        /// callback keeps the job id it was given.
        #[test]
        fn callback_shaped_json_never_panics(
            status in prop_oneof![Just("processing".to_owned()), Just("completed".to_owned()), Just("failed".to_owned()), Just("progress".to_owned()), ".{0,10}"],
            paths in prop::collection::vec(".{0,40}", 0..4),
            snake in any::<bool>(),
        ) {
            let id = "0192f0c4-1111-7abc-8def-000000000001";
            let body = if snake {
                serde_json::json!({"job_id": id, "status": status, "assets": paths})
            } else {
                serde_json::json!({"jobId": id, "status": status, "imageUrls": paths})
            };
            if let Ok(p) = ParsedCallback::from_slice(body.to_string().as_bytes()) {
                prop_assert_eq!(p.job_id.to_string(), id);
            }
        }
    }
}
