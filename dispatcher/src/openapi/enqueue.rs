//! The enqueue request schema. It is written out from the catalog and the validation
//! bounds (not derived), so that a body the schema allows is one `validation::validate`
//! accepts, and one it forbids is refused: one named variant per queue (`EnqueueSdxlJob`,
//! `EnqueueWanJob`: a generated client gets a class for each), the reference-image rules as
//! patterns, the hosts this instance allows.

use serde_json::{json, Value};

use gpuq_schemas::catalog::CATALOG;
use gpuq_schemas::{JobKind, JobType};

use crate::validation::{
    MAX_ID_CHARS, MAX_PROMPT_CHARS, MAX_REFERENCE_CHARS, MAX_START_WITHIN_SECS,
};

/// What Rust's `char::is_whitespace` (and so `str::trim`) treats as white space, as a
/// regex character class body. Written out rather than `\s`, whose meaning differs between
/// regex dialects (Python's includes U+001C..U+001F, ECMAScript's U+FEFF).
pub const WHITE_SPACE: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A string without U+0000, which PostgreSQL cannot store (`validation` refuses it).
const NO_NUL: &str = r"^[^\x00]*$";

fn nullable(kind: &str, bounds: Value) -> Value {
    let mut schema = json!({ "type": [kind, "null"] });
    if let (Some(s), Some(b)) = (schema.as_object_mut(), bounds.as_object()) {
        s.extend(b.clone());
    }
    schema
}

/// `reference_image`: a storage key under the caller's own id (403 otherwise, which no
/// schema can say), or an http(s) URL on one of `hosts`.
fn reference_schema(hosts: &[String]) -> Value {
    let ws = WHITE_SPACE;
    let path = json!({
        "type": "string",
        "description": "storage key `<your user id>/...` or `<bucket>/<your user id>/...`; \
                        no `..`, `%`, `:`, `\\` or control characters",
        "pattern": format!(
            r"^(?!.*\.\.)(?=.*[^{ws}])[^%\\:\x00-\x1f\x7f-\x9f]{{1,{MAX_REFERENCE_CHARS}}}$"
        ),
    });
    let mut forms = vec![json!({ "type": "null" }), path];
    if !hosts.is_empty() {
        forms.push(url_on(hosts, MAX_REFERENCE_CHARS));
    }
    json!({ "anyOf": forms })
}

/// An http(s) URL on one of `hosts` (not empty), at most `max` characters.
fn url_on(hosts: &[String], max: usize) -> Value {
    let ws = WHITE_SPACE;
    let names: Vec<String> = hosts
        .iter()
        .map(|h| regex_escape(&h.to_ascii_lowercase()))
        .collect();
    json!({
        "type": "string",
        "description": format!("http(s) URL on {}", hosts.join(", ")),
        "maxLength": max,
        "pattern": format!(r"^https?://(?:{})(?:[/?#][^{ws}\x00-\x1f\x7f-\x9f]*)?$", names.join("|")),
    })
}

/// A job's own webhook and its events, for an instance that takes them on `hosts`.
fn webhook_properties(hosts: &[String]) -> Value {
    let mut url = url_on(hosts, 2048);
    url["description"] = json!(format!(
        "POST the job's events here, signed per Standard Webhooks with the server's job \
         secret; an http(s) URL on {}",
        hosts.join(", ")
    ));
    json!({
        "webhook": { "anyOf": [{ "type": "null" }, url] },
        "webhookEvents": {
            "type": ["array", "null"], "minItems": 1, "uniqueItems": true,
            "items": { "enum": crate::webhooks::EVENTS },
            "description": "the events the webhook gets (default: completed, failed, \
                            cancelled); needs `webhook`",
        },
    })
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !c.is_ascii_alphanumeric() && c != '-';
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn metadata_schema(allowed_num_images: &[u32], hosts: &[String]) -> Value {
    let text = || {
        nullable(
            "string",
            json!({ "maxLength": MAX_PROMPT_CHARS, "pattern": NO_NUL }),
        )
    };
    let number = |max: f64| nullable("number", json!({ "minimum": 0.0, "maximum": max }));
    let mut counts: Vec<Value> = allowed_num_images.iter().map(|n| json!(n)).collect();
    counts.push(Value::Null);
    let reference = reference_schema(hosts);
    json!({
        "type": "object",
        "description": "Generation parameters; other keys pass through to the worker. \
                        `prompt` may be blank only with `exact_copy_mode` and a reference.",
        "required": ["prompt"],
        "propertyNames": { "pattern": NO_NUL },
        "additionalProperties": { "$ref": "#/components/schemas/StorableJson" },
        "properties": {
            "prompt": {
                "type": "string",
                "maxLength": MAX_PROMPT_CHARS,
                "pattern": format!(r"^[^\x00]*[^{WHITE_SPACE}\x00][^\x00]*$"),
            },
            "negative_prompt": text(),
            "num_images": { "enum": counts },
            "seed": nullable("integer", json!({ "minimum": 0, "maximum": u32::MAX })),
            "steps": nullable("integer", json!({ "minimum": 1, "maximum": 150 })),
            "guidance": number(30.0),
            "guidance_scale": number(30.0),
            "reference_strength": number(1.0),
            "denoise_strength": number(1.0),
            "reference_image": { "anyOf": [reference, { "type": "boolean" }] },
            "reference_image_url": reference,
            "reference_url": reference,
            "start_reference_url": reference,
            "end_reference_url": reference,
            "exact_copy_mode": nullable("boolean", json!({})),
            // Options the replaced apps sent (../shared/LEGACY.md). Their older names of the
            // parameters above (num_inference_steps, preserve_strength, userNegativePrompt,
            // batch_count) are read too, and must agree with the current ones; they are left
            // out here so that generated clients use one name per parameter (docs/legacy.md).
            "originalEnhancedPrompt": text(),
            "reference_type": { "enum": ["style", "character", "composition", null] },
            "compel_enabled": nullable("boolean", json!({})),
            "compel_weights": text(),
            "skip_enhancement": nullable("boolean", json!({})),
            "user_requested_enhancement": nullable("boolean", json!({})),
            "regeneration": nullable("boolean", json!({})),
        },
        "allOf": [
            // exact_copy_mode: true needs a reference image.
            {
                "if": {
                    "required": ["exact_copy_mode"],
                    "properties": { "exact_copy_mode": { "const": true } },
                },
                "then": {
                    "anyOf": [
                        { "required": ["reference_image"], "properties": { "reference_image": { "type": "string" } } },
                        { "required": ["reference_image_url"], "properties": { "reference_image_url": { "type": "string" } } },
                        { "required": ["reference_image", "reference_url"], "properties": {
                            "reference_image": { "const": true }, "reference_url": { "type": "string" } } },
                    ],
                },
            },
            // The v1 flag `reference_image: true` names its reference in `reference_url`.
            {
                "if": {
                    "required": ["reference_image"],
                    "properties": { "reference_image": { "const": true } },
                },
                "then": {
                    "anyOf": [
                        { "required": ["reference_url"], "properties": { "reference_url": { "type": "string" } } },
                        { "required": ["reference_image_url"], "properties": { "reference_image_url": { "type": "string" } } },
                    ],
                },
            },
        ],
    })
}

/// The request schemas for an instance that accepts reference URLs on `hosts`, by
/// component name: `EnqueueRequest` (one of the variants) and one variant per queue.
/// `webhook_hosts` empty: the instance takes no per-job webhooks (they are not in the schema).
pub fn request_schemas(hosts: &[String], webhook_hosts: &[String]) -> Vec<(String, Value)> {
    let mut groups: Vec<(&str, &[u32], Vec<&str>)> = Vec::new();
    for spec in &CATALOG {
        match groups
            .iter_mut()
            .find(|(q, n, _)| *q == spec.queue && *n == spec.allowed_num_images)
        {
            Some((_, _, types)) => types.push(spec.job_type.as_str()),
            None => groups.push((
                spec.queue,
                spec.allowed_num_images,
                vec![spec.job_type.as_str()],
            )),
        }
    }
    let id = || {
        nullable(
            "string",
            json!({ "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": NO_NUL,
                    "description": "pass-through" }),
        )
    };
    let text = || {
        nullable(
            "string",
            json!({ "maxLength": MAX_PROMPT_CHARS, "pattern": NO_NUL }),
        )
    };
    let storable = || json!({ "$ref": "#/components/schemas/StorableJson" });
    let mut out: Vec<(String, Value)> = Vec::new();
    for (queue, counts, types) in groups {
        let name = variant_name(queue, &out);
        let variant = json!({
            "type": "object",
            "description": format!("A job on `{queue}`."),
            "required": ["jobType", "metadata"],
            "additionalProperties": false,
            "properties": {
                "jobType": { "enum": types },
                "metadata": metadata_schema(counts, hosts),
                "projectId": id(),
                "videoId": id(),
                "imageId": id(),
                // What v1 apps sent beside the metadata (../shared/LEGACY.md); recorded in
                // the metadata, and `originalPrompt` is the prompt when set.
                "originalPrompt": text(),
                "enhancedPrompt": text(),
                "isPromptEnhanced": nullable("boolean", json!({})),
                "enhancementMetadata": storable(),
                "selectedPresets": storable(),
                "contentType": nullable("string", json!({ "pattern": NO_NUL })),
                "enhancementModel": nullable("string", json!({ "pattern": NO_NUL })),
                // gpuq's own: fail the job unless it starts within this many seconds.
                "startWithinSeconds": nullable("integer", json!({
                    "minimum": 1, "maximum": MAX_START_WITHIN_SECS,
                    "description": "fail the job (start_deadline_exceeded) unless a worker \
                                    starts it within this many seconds; refused at once \
                                    (429 deadline_unreachable) when the queue predicts it \
                                    cannot" })),
            },
            "allOf": content_type_rules(&types),
        });
        let mut variant = variant;
        if !webhook_hosts.is_empty() {
            if let (Some(props), Value::Object(hooks)) = (
                variant["properties"].as_object_mut(),
                webhook_properties(webhook_hosts),
            ) {
                props.extend(hooks);
            }
            // `webhookEvents` names the events of a `webhook`: not without one.
            if let Some(rules) = variant["allOf"].as_array_mut() {
                rules.push(json!({
                    "if": { "required": ["webhookEvents"],
                            "properties": { "webhookEvents": { "type": "array" } } },
                    "then": { "required": ["webhook"],
                              "properties": { "webhook": { "type": "string" } } },
                }));
            }
        }
        out.push((name, variant));
    }
    out.push(("StorableJson".into(), storable_json()));
    let refs: Vec<Value> = out
        .iter()
        .filter(|(name, _)| name.starts_with("Enqueue"))
        .map(|(name, _)| json!({ "$ref": format!("#/components/schemas/{name}") }))
        .collect();
    out.push((
        "EnqueueRequest".into(),
        json!({
            "description": "A job: one of the catalog's types (`GET /v1/job-types`) and its \
                            parameters. Bodies over 64 KiB get 413, nesting over 32 levels 400.",
            "oneOf": refs,
        }),
    ));
    out
}

/// `contentType`, when it says `image` or `video`, is the kind the job type makes.
fn content_type_rules(types: &[&str]) -> Vec<Value> {
    [(JobKind::Image, "video"), (JobKind::Video, "image")]
        .into_iter()
        .filter_map(|(kind, other)| {
            let of_kind: Vec<&str> = types
                .iter()
                .copied()
                .filter(|t| t.parse::<JobType>().is_ok_and(|t| t.spec().kind == kind))
                .collect();
            (!of_kind.is_empty()).then(|| {
                json!({
                    "if": { "properties": { "jobType": { "enum": of_kind } } },
                    "then": { "properties": { "contentType": { "not": { "const": other } } } },
                })
            })
        })
        .collect()
}

/// Any JSON value PostgreSQL can store in `jsonb`: no U+0000 in a string or a key.
///
/// Written without `type` or `anyOf`, with the array and object rules under `if`/`then`:
/// `pattern` applies to strings only, so this one recursive schema says exactly what a union
/// of the four kinds would. Generators read it as "any value" (openapi-typescript: `unknown`;
/// openapi-python-client: `Any`). A recursive union is what they cannot read: the Python
/// generator drops every schema that uses one (the enqueue request with it), and a bare
/// `additionalProperties` makes the TypeScript one type every value as an object.
fn storable_json() -> Value {
    let me = json!({ "$ref": "#/components/schemas/StorableJson" });
    json!({
        "description": "Any JSON value without U+0000 (NUL) in a string or key.",
        "pattern": NO_NUL,
        "if": { "type": "array" },
        "then": { "items": me },
        "else": {
            "if": { "type": "object" },
            "then": { "propertyNames": { "pattern": NO_NUL }, "additionalProperties": me },
        },
    })
}

/// `EnqueueSdxlJob` for `sdxl_queue`; a second variant of one queue gets a number.
fn variant_name(queue: &str, taken: &[(String, Value)]) -> String {
    let stem: String = queue
        .trim_end_matches("_queue")
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    let base = format!("Enqueue{stem}Job");
    let same = taken.iter().filter(|(n, _)| n.starts_with(&base)).count();
    if same == 0 {
        base
    } else {
        format!("{base}{}", same + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_class_is_exactly_rusts_white_space() {
        let class = regex_class(WHITE_SPACE);
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(class(c), c.is_whitespace(), "{:?}", c);
        }
    }

    /// Parses the ranges of [`WHITE_SPACE`] (`\t`, `\r`, `\xNN`, `\uNNNN`, literal chars).
    fn regex_class(body: &str) -> impl Fn(char) -> bool {
        let mut chars = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (c, tail) = if let Some(t) = rest.strip_prefix(r"\t") {
                ('\t', t)
            } else if let Some(t) = rest.strip_prefix(r"\r") {
                ('\r', t)
            } else if let Some(t) = rest.strip_prefix(r"\x") {
                (
                    char::from_u32(u32::from_str_radix(&t[..2], 16).unwrap()).unwrap(),
                    &t[2..],
                )
            } else if let Some(t) = rest.strip_prefix(r"\u") {
                (
                    char::from_u32(u32::from_str_radix(&t[..4], 16).unwrap()).unwrap(),
                    &t[4..],
                )
            } else {
                let c = rest.chars().next().unwrap();
                (c, &rest[c.len_utf8()..])
            };
            chars.push(c);
            rest = tail;
        }
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars.get(i + 1) == Some(&'-') && i + 2 < chars.len() {
                ranges.push((chars[i], chars[i + 2]));
                i += 3;
            } else {
                ranges.push((chars[i], chars[i]));
                i += 1;
            }
        }
        move |c| ranges.iter().any(|(a, b)| (*a..=*b).contains(&c))
    }

    #[test]
    fn every_job_type_is_in_exactly_one_named_variant() {
        let schemas: std::collections::HashMap<String, Value> =
            request_schemas(&[], &[]).into_iter().collect();
        let mut seen: Vec<String> = schemas["EnqueueRequest"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let name = r["$ref"].as_str().unwrap();
                &schemas[name.trim_start_matches("#/components/schemas/")]
            })
            .flat_map(|b| {
                b["properties"]["jobType"]["enum"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        seen.sort();
        let mut all: Vec<String> = gpuq_schemas::JobType::names().map(String::from).collect();
        all.sort();
        assert_eq!(seen, all);
    }
}
