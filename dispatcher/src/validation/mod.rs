//! Enqueue validation: turns a raw request body into a [`ValidatedJob`] or a 400/403 that
//! names the field and the rule. Also applies the catalog defaults and the image-to-image
//! rules, so the envelope carries the final parameters.
//!
//! [`legacy`] first brings the replaced apps' request shapes to this one; the metadata
//! aliases they used are read here (the first of an alias group that is set wins; every one
//! set is checked).

mod legacy;
mod routing;

pub use routing::{checkpoint, loras};

use serde_json::{Map, Value};

use gpuq_schemas::storable::nul_in_map;
use gpuq_schemas::{GenerationConfig, JobType, UserId};

use crate::ApiError;

/// Longest prompt or negative prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// Deepest JSON nesting accepted in a request body.
pub const MAX_DEPTH: usize = 32;
/// Longest pass-through id (`projectId`, `videoId`, `imageId`), in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest reference image path or URL, in characters.
pub const MAX_REFERENCE_CHARS: usize = 2048;

/// A request that passed every rule.
#[derive(Debug, Clone)]
pub struct ValidatedJob {
    /// The job type.
    pub job_type: JobType,
    /// The prompt (blank only in exact-copy mode).
    pub prompt: String,
    /// The negative prompt (never in exact-copy mode).
    pub negative_prompt: Option<String>,
    /// Final generation parameters.
    pub config: GenerationConfig,
    /// The app's metadata, as sent.
    pub metadata: Value,
    /// Pass-through ids.
    pub project_id: Option<String>,
    /// Pass-through ids.
    pub video_id: Option<String>,
    /// Pass-through ids.
    pub image_id: Option<String>,
    /// Fail the job unless a worker starts it within this many seconds.
    pub start_within_secs: Option<u32>,
    /// The checkpoint it names, from its type's allow-list ([`checkpoint`]).
    pub model: Option<String>,
    /// The LoRAs it names, from its type's allow-list ([`loras`]).
    pub loras: Vec<gpuq_schemas::Lora>,
}

/// The longest start deadline a job may ask for: a day.
pub const MAX_START_WITHIN_SECS: u32 = 86_400;

/// `startWithinSeconds`: absent, null, or a whole number of seconds from 1 to a day (`60.0`
/// too: JSON Schema's integers include it).
fn start_within(body: &Map<String, Value>) -> Result<Option<u32>, ApiError> {
    match body.get(legacy::START_WITHIN) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_whole(v)
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| (1..=MAX_START_WITHIN_SECS).contains(s))
            .map(Some)
            .ok_or_else(|| {
                bad(
                    "invalid_start_within",
                    format!(
                        "startWithinSeconds must be a whole number from 1 to {MAX_START_WITHIN_SECS}"
                    ),
                )
            }),
    }
}

/// What the caller is allowed to reference.
pub struct ReferencePolicy<'a> {
    /// The caller; storage references must lie under this id.
    pub user: UserId,
    /// Hosts whose http(s) URLs may be referenced.
    pub allowed_hosts: &'a [String],
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// The nesting depth of a JSON value (a scalar is 0).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn unstorable(at: &str) -> ApiError {
    bad(
        "unstorable_text",
        format!("{at} contains U+0000 (NUL), which cannot be stored"),
    )
}

/// Validates a parsed body.
pub fn validate(body: &Value, policy: &ReferencePolicy<'_>) -> Result<ValidatedJob, ApiError> {
    if depth(body) > MAX_DEPTH {
        return Err(bad(
            "too_deep",
            format!("JSON nesting deeper than {MAX_DEPTH} levels"),
        ));
    }
    let (body, restated) = legacy::canonical(
        body.as_object()
            .ok_or_else(|| bad("invalid_body", "body must be a JSON object"))?,
    )?;
    let body = &body;
    let job_type = match body.get("jobType") {
        Some(Value::String(s)) => s
            .parse::<JobType>()
            .map_err(|e| bad("invalid_job_type", format!("jobType: {e}")))?,
        Some(_) => return Err(bad("invalid_job_type", "jobType must be a string")),
        None => {
            return Err(bad(
                "missing_job_type",
                format!(
                    "jobType is required; valid types: {}",
                    JobType::names().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    restated.check(job_type)?;
    let start_within_secs = start_within(body)?;
    let empty = Map::new();
    let meta = match body.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("invalid_metadata", "metadata must be an object")),
    };
    if let Some(at) = nul_in_map(meta) {
        return Err(unstorable(&format!("metadata{at}")));
    }
    let ids = |k: &str| -> Result<Option<String>, ApiError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.contains('\0') => Err(unstorable(k)),
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(bad(
                "invalid_id",
                format!("{k} must be a string of 1 to {MAX_ID_CHARS} characters"),
            )),
        }
    };
    let (project_id, video_id, image_id) = (ids("projectId")?, ids("videoId")?, ids("imageId")?);
    let (prompt, negative_prompt, config) = parameters(job_type, meta, policy, &restated)?;
    Ok(ValidatedJob {
        job_type,
        prompt,
        negative_prompt,
        config,
        metadata: Value::Object(meta.clone()),
        project_id,
        video_id,
        image_id,
        start_within_secs,
        model: None,
        loras: Vec::new(),
    })
}

fn text(meta: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_PROMPT_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(bad(
            "prompt_too_long",
            format!("metadata.{key} is longer than {MAX_PROMPT_CHARS} characters"),
        )),
        Some(_) => Err(bad(
            "invalid_prompt",
            format!("metadata.{key} must be a string"),
        )),
    }
}

/// A non-negative whole number, written `3` or `3.0` (JSON Schema counts both as integers).
pub(crate) fn as_whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(f))
            .map(|f| f as u64)
    })
}

/// A whole number in `min..=max`, or nothing.
fn integer(
    meta: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match meta.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => match as_whole(v) {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad(
                "out_of_range",
                format!("metadata.{key} must be an integer from {min} to {max}"),
            )),
        },
    }
}

/// A boolean or nothing.
fn flag(meta: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(
            "invalid_flag",
            format!("metadata.{key} must be a boolean"),
        )),
    }
}

/// The first of `keys` (aliases) that is set; every one that is set must be in range.
fn number(
    meta: &Map<String, Value>,
    keys: &[&str],
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    let mut first = None;
    for key in keys {
        let Some(v) = meta.get(*key).filter(|v| !v.is_null()) else {
            continue;
        };
        match v.as_f64() {
            Some(n) if n.is_finite() && (min..=max).contains(&n) => {
                first = first.or(Some(n));
            }
            _ => {
                return Err(bad(
                    "out_of_range",
                    format!("metadata.{key} must be a number from {min} to {max}"),
                ))
            }
        }
    }
    Ok(first)
}

type Parameters = (String, Option<String>, GenerationConfig);

/// The value of a group of names for one parameter (the replaced apps' older names): the
/// one set, or a 400 naming both when two set ones differ (neither is dropped unseen).
fn agreeing<T: PartialEq + Clone>(names: &[(&str, Option<T>)]) -> Result<Option<T>, ApiError> {
    let mut set = names.iter().filter_map(|(k, v)| Some((*k, v.clone()?)));
    let Some((first_key, first)) = set.next() else {
        return Ok(None);
    };
    for (key, v) in set {
        if v != first {
            return Err(bad(
                "conflicting_fields",
                format!("metadata.{first_key} and metadata.{key} name the same parameter with different values"),
            ));
        }
    }
    Ok(Some(first))
}

fn non_blank(meta: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    Ok(text(meta, key)?.filter(|s| !s.trim().is_empty()))
}

/// `1 - r` as the client would write it: 1 - 0.7 is 0.3, not 0.30000000000000004 (the
/// strengths are given to a few decimals; six are kept).
fn complement(r: f64) -> f64 {
    ((1.0 - r) * 1e6).round() / 1e6
}

fn parameters(
    job_type: JobType,
    meta: &Map<String, Value>,
    policy: &ReferencePolicy<'_>,
    top: &legacy::Restated,
) -> Result<Parameters, ApiError> {
    let spec = job_type.spec();
    let d = spec.defaults;
    let prompt = text(meta, "prompt")?.unwrap_or_default();
    // v1 apps sent the user's own words as `originalPrompt`, which took precedence.
    let original = match &top.original_prompt {
        Some(p) if p.contains('\0') => return Err(unstorable("originalPrompt")),
        Some(p) if p.chars().count() > MAX_PROMPT_CHARS => {
            return Err(bad(
                "prompt_too_long",
                format!("originalPrompt is longer than {MAX_PROMPT_CHARS} characters"),
            ))
        }
        other => other.clone(),
    };
    let negative = agreeing(&[
        ("negative_prompt", non_blank(meta, "negative_prompt")?),
        ("userNegativePrompt", non_blank(meta, "userNegativePrompt")?),
    ])?;
    legacy_checks(meta)?;
    let skip_enhancement =
        flag(meta, "skip_enhancement")?.unwrap_or(false) || top.bypass_enhancement;
    // An enhanced prompt that came with the reference means "modify", never "copy".
    let enhanced_original = non_blank(meta, "originalEnhancedPrompt")?;
    let count = |key| integer(meta, key, 0, u64::from(u32::MAX));
    let num_images = agreeing(&[
        ("num_images", count("num_images")?),
        ("batch_count", count("batch_count")?),
    ])?
    .map_or(d.num_images, |n| n as u32);
    if !spec.allowed_num_images.contains(&num_images) {
        return Err(bad(
            "invalid_num_images",
            format!(
                "metadata.num_images must be one of {:?} for {job_type}",
                spec.allowed_num_images
            ),
        ));
    }
    let seed = integer(meta, "seed", 0, u64::from(u32::MAX))?;
    let steps = agreeing(&[
        ("steps", integer(meta, "steps", 1, 150)?),
        (
            "num_inference_steps",
            integer(meta, "num_inference_steps", 1, 150)?,
        ),
    ])?
    .map(|n| n as u32);
    let guidance = number(meta, &["guidance", "guidance_scale"], 0.0, 30.0)?;
    let reference_strength = agreeing(&[
        (
            "reference_strength",
            number(meta, &["reference_strength"], 0.0, 1.0)?,
        ),
        (
            "preserve_strength",
            number(meta, &["preserve_strength"], 0.0, 1.0)?,
        ),
    ])?;
    let denoise = number(meta, &["denoise_strength"], 0.0, 1.0)?;
    let reference = reference_image(meta, policy)?;
    let exact_flag = match meta.get("exact_copy_mode") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(bad(
                "invalid_exact_copy_mode",
                "metadata.exact_copy_mode must be a boolean",
            ))
        }
    };
    if exact_flag && reference.is_none() {
        return Err(bad(
            "missing_reference",
            "metadata.exact_copy_mode needs metadata.reference_image",
        ));
    }
    let exact_copy = exact_flag && prompt.trim().is_empty() && enhanced_original.is_none();
    if prompt.trim().is_empty() && !exact_copy {
        return Err(bad(
            "missing_prompt",
            "metadata.prompt is required and must not be blank",
        ));
    }
    let prompt = match original {
        Some(original) if !exact_copy => original,
        _ => prompt,
    };
    // Image-to-image: an explicit value always wins; then the mode's defaults.
    let (steps, guidance, denoise, negative) = match (&reference, exact_copy) {
        (Some(_), true) => (
            steps.unwrap_or(15),
            guidance.unwrap_or(1.0),
            Some(denoise.unwrap_or(0.05)),
            None,
        ),
        (Some(_), false) => (
            steps.unwrap_or(20),
            guidance.unwrap_or(6.0),
            Some(
                denoise
                    .or(reference_strength.map(complement))
                    .unwrap_or(0.20),
            ),
            negative,
        ),
        (None, _) => (
            steps.unwrap_or(d.steps),
            guidance.unwrap_or(d.guidance),
            denoise,
            negative,
        ),
    };
    let config = GenerationConfig {
        steps,
        guidance,
        width: d.width,
        height: d.height,
        frames: d.frames,
        num_images,
        seed,
        reference_image: reference,
        reference_strength,
        denoise_strength: denoise,
        exact_copy,
        enhance_prompt: spec.enhance_prompt && !exact_copy && !skip_enhancement,
    };
    Ok((prompt, negative, config))
}

/// Every metadata field a worker may fetch an image from. Each one set is checked by
/// [`one_reference`]; the reference image is `reference_image` (alias
/// `reference_image_url`; the first set wins), the others pass through in the metadata.
/// v1 apps sent `reference_image: true` as a flag and the reference in `reference_url`.
const REFERENCE_FIELDS: [&str; 5] = [
    "reference_image",
    "reference_image_url",
    "reference_url",
    "start_reference_url",
    "end_reference_url",
];

/// The reference image, after checking every reference field set.
fn reference_image(
    meta: &Map<String, Value>,
    policy: &ReferencePolicy<'_>,
) -> Result<Option<String>, ApiError> {
    let flag = match meta.get("reference_image") {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    };
    let mut checked = std::collections::HashMap::new();
    for field in REFERENCE_FIELDS {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(_)) if field == "reference_image" => {}
            Some(v) => {
                checked.insert(field, one_reference(field, v, policy)?);
            }
        }
    }
    let take = |field: &str| checked.get(field).cloned();
    Ok(match flag {
        // The v1 flag: a reference is attached, in `reference_url`.
        Some(true) => Some(
            take("reference_url")
                .or_else(|| take("reference_image_url"))
                .ok_or_else(|| {
                    bad(
                        "missing_reference",
                        "metadata.reference_image is true but neither metadata.reference_url \
                         nor metadata.reference_image_url names the reference",
                    )
                })?,
        ),
        Some(false) => take("reference_image_url"),
        None => take("reference_image").or_else(|| take("reference_image_url")),
    })
}

/// The replaced apps' other metadata keys: checked for type, then passed to the worker in
/// the metadata.
fn legacy_checks(meta: &Map<String, Value>) -> Result<(), ApiError> {
    for key in [
        "compel_enabled",
        "user_requested_enhancement",
        "regeneration",
    ] {
        flag(meta, key)?;
    }
    text(meta, "compel_weights")?;
    if let Some(t) = text(meta, "reference_type")? {
        if !["style", "character", "composition"].contains(&t.as_str()) {
            return Err(bad(
                "invalid_reference_type",
                "metadata.reference_type must be style, character or composition",
            ));
        }
    }
    Ok(())
}

/// A reference is either an absolute URL written `http(s)://<host>[/?#...]`, parsed as a
/// WHATWG parser (a Python or Node worker) reads it, with no credentials or port and a
/// lower-case host on the allow-list (answered in its parsed form, so the worker fetches
/// exactly what was checked); or a storage key with no scheme (no `:` at all):
/// `<user>/...` or `<bucket>/<user>/...`, under the caller's own id. Anything else is
/// refused: `http:169.254.169.254/...` is a URL to that host, not a key.
fn one_reference(field: &str, v: &Value, policy: &ReferencePolicy<'_>) -> Result<String, ApiError> {
    let raw = match v {
        Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX_REFERENCE_CHARS => {
            s.trim()
        }
        _ => {
            return Err(bad(
                "invalid_reference",
                format!(
                    "metadata.{field} must be a non-empty string of at most \
                     {MAX_REFERENCE_CHARS} characters"
                ),
            ))
        }
    };
    match url::Url::parse(raw) {
        Ok(url) => reference_url(field, raw, url, policy),
        // No scheme: a storage key.
        Err(url::ParseError::RelativeUrlWithoutBase) => reference_key(field, raw, policy),
        Err(e) => Err(bad(
            "invalid_reference",
            format!("metadata.{field} is not a valid URL: {e}"),
        )),
    }
}

fn reference_url(
    field: &str,
    raw: &str,
    url: url::Url,
    policy: &ReferencePolicy<'_>,
) -> Result<String, ApiError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "invalid_reference",
            format!(
                "metadata.{field}: scheme {:?} is not allowed (http or https URLs, or storage keys)",
                url.scheme()
            ),
        ));
    }
    let host = url.host_str().unwrap_or_default();
    // The text must say what the parser read: `http(s)://` then the host itself, so no
    // credentials, no port and no other spelling of an address slip past the allow-list.
    let plain = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .and_then(|rest| rest.strip_prefix(host))
        .is_some_and(|after| after.is_empty() || after.starts_with(['/', '?', '#']));
    if !plain {
        return Err(bad(
            "invalid_reference",
            format!(
                "metadata.{field} must be written http(s)://<host>/...: no credentials, port \
                 or upper-case host"
            ),
        ));
    }
    if !policy
        .allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
    {
        return Err(bad(
            "reference_host_not_allowed",
            format!("metadata.{field} host {host:?} is not on the allow-list"),
        ));
    }
    Ok(url.into())
}

fn reference_key(field: &str, raw: &str, policy: &ReferencePolicy<'_>) -> Result<String, ApiError> {
    if raw.contains("..")
        || raw.contains('\\')
        || raw.contains('%')
        || raw.contains(':')
        || raw.chars().any(char::is_control)
    {
        return Err(bad(
            "invalid_reference",
            format!("metadata.{field} must be a plain storage path"),
        ));
    }
    let user = policy.user.to_string();
    let mut segments = raw
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty());
    // `<user>/...`, or `<bucket>/<user>/...` where the bucket is a bucket name, never
    // another id (`<victim>/<me>/x.png` is the victim's folder).
    let owned = match (segments.next(), segments.next()) {
        (Some(first), _) if first == user => true,
        (Some(bucket), Some(second)) => second == user && is_bucket_name(bucket),
        _ => false,
    };
    if !owned {
        return Err(ApiError::Forbidden {
            code: "cross_user_reference",
            message: format!("metadata.{field} must lie under your own user id"),
        });
    }
    Ok(raw.to_owned())
}

/// A storage bucket's name: lowercase letters, digits, `-`, `_` and `.`, at most 63, and
/// not a UUID.
fn is_bucket_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && uuid::Uuid::try_parse(s).is_err()
}

#[cfg(test)]
mod storable {
    use super::*;

    fn validate_body(body: Value) -> Result<ValidatedJob, ApiError> {
        let user: UserId = "11111111-1111-1111-1111-111111111111".parse().unwrap();
        let policy = ReferencePolicy {
            user,
            allowed_hosts: &[],
        };
        validate(&body, &policy)
    }

    #[test]
    fn a_nul_anywhere_postgres_would_store_is_refused_naming_where() {
        for (body, at) in [
            (
                serde_json::json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a\u{0}b"}}),
                "metadata.prompt",
            ),
            (
                serde_json::json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a", "x": {"y": ["ok", "\u{0}"]}}}),
                "metadata.x.y[1]",
            ),
            (
                serde_json::json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a", "k\u{0}": 1}}),
                "metadata.k\\u0000 (a key)",
            ),
            (
                serde_json::json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a"}, "projectId": "p\u{0}"}),
                "projectId",
            ),
        ] {
            let Err(err) = validate_body(body) else {
                panic!("accepted a NUL at {at}")
            };
            assert_eq!(err.code(), "unstorable_text");
            assert!(err.to_string().starts_with(at), "{err}");
        }
    }

    #[test]
    fn other_control_characters_are_stored_as_sent() {
        let body = serde_json::json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a\u{1}b", "x": "\u{1f}"}});
        assert!(validate_body(body).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::hash_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn metadata() -> impl Strategy<Value = Value> {
        let keys = prop_oneof![
            Just("prompt"),
            Just("num_images"),
            Just("seed"),
            Just("steps"),
            Just("guidance"),
            Just("reference_image"),
            Just("reference_strength"),
            Just("denoise_strength"),
            Just("exact_copy_mode"),
            Just("negative_prompt"),
        ];
        prop::collection::hash_map(keys, json_value(), 0..8)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any body: a validated job or a 400/403, never a panic; accepted jobs obey every
        /// bound the envelope promises.
        #[test]
        fn validation_never_panics_and_accepted_jobs_are_in_bounds(
            job_type in prop_oneof![Just("sdxl_image_fast".to_owned()), Just("video_fast".to_owned()), Just("image7b_fast_enhanced".to_owned()), ".{0,12}"],
            metadata in metadata(),
        ) {
            let user: UserId = "11111111-1111-1111-1111-111111111111".parse().unwrap();
            let policy = ReferencePolicy { user, allowed_hosts: &["images.example.com".to_owned()] };
            let body = serde_json::json!({"jobType": job_type, "metadata": metadata});
            if let Ok(job) = validate(&body, &policy) {
                let c = &job.config;
                prop_assert!((1..=150).contains(&c.steps));
                prop_assert!((0.0..=30.0).contains(&c.guidance));
                prop_assert!(c.seed.is_none_or(|s| s <= u64::from(u32::MAX)));
                prop_assert!(job.job_type.spec().allowed_num_images.contains(&c.num_images));
                prop_assert!(c.denoise_strength.is_none_or(|d| (0.0..=1.0).contains(&d)));
                prop_assert!(!job.prompt.trim().is_empty() || c.exact_copy);
                if let Some(r) = &c.reference_image {
                    prop_assert!(r.starts_with("https://images.example.com") || r.starts_with("http://images.example.com") || r.contains(&user.to_string()));
                }
            }
        }
    }
}
