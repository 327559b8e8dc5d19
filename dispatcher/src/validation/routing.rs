//! What a job asks to have loaded: a checkpoint (`metadata.model`) and LoRAs
//! (`metadata.loras`), each from its type's allow-list in configuration (ADR 0020). The
//! envelope carries them for routed claims; anything else is a 400 naming the value.
//!
//! A type without a list leaves the field to the app: passed through untouched in the
//! metadata, as the replaced apps sent it, and not routed on.

use std::collections::HashMap;

use serde_json::{Map, Value};

use gpuq_schemas::{JobType, Lora};

use super::{bad, ValidatedJob};
use crate::ApiError;

/// Most LoRAs one job may apply.
const MAX_LORAS: usize = 8;
/// The weights a LoRA may have: beyond them images are noise.
const LORA_WEIGHTS: std::ops::RangeInclusive<f64> = -4.0..=4.0;

/// `metadata.model`: a name from the type's checkpoint list, or None when the job names
/// none or its type has no list.
pub fn checkpoint(
    job: &ValidatedJob,
    lists: &HashMap<JobType, Vec<String>>,
) -> Result<Option<String>, ApiError> {
    let Some(list) = lists.get(&job.job_type) else {
        return Ok(None);
    };
    match job.metadata.get("model") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if list.iter().any(|m| m == s) => Ok(Some(s.clone())),
        Some(v) => Err(bad(
            "invalid_model",
            format!(
                "metadata.model {} is not a checkpoint of {}; allowed: {}",
                shown(v),
                job.job_type,
                list.join(", ")
            ),
        )),
    }
}

/// `metadata.loras`: `[{"name": ..., "weight": ...}]`, at most [`MAX_LORAS`], each name
/// once and from the type's LoRA list, each weight in [`LORA_WEIGHTS`] (absent: 1).
pub fn loras(
    job: &ValidatedJob,
    lists: &HashMap<JobType, Vec<String>>,
) -> Result<Vec<Lora>, ApiError> {
    let Some(list) = lists.get(&job.job_type) else {
        return Ok(Vec::new());
    };
    let items = match job.metadata.get("loras") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_LORAS => items,
        Some(_) => {
            return Err(bad(
                "invalid_lora",
                format!("metadata.loras must be a list of at most {MAX_LORAS} {{\"name\", \"weight\"}} objects"),
            ))
        }
    };
    let mut loras: Vec<Lora> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let lora = one(i, item.as_object(), list, job.job_type)?;
        if loras.iter().any(|l| l.name == lora.name) {
            return Err(bad(
                "invalid_lora",
                format!("metadata.loras[{i}]: {:?} is listed twice", lora.name),
            ));
        }
        loras.push(lora);
    }
    Ok(loras)
}

fn one(
    i: usize,
    item: Option<&Map<String, Value>>,
    list: &[String],
    job_type: JobType,
) -> Result<Lora, ApiError> {
    let item = item.ok_or_else(|| {
        bad(
            "invalid_lora",
            format!("metadata.loras[{i}] must be an object with a name and a weight"),
        )
    })?;
    let name = match item.get("name") {
        Some(Value::String(s)) if list.iter().any(|l| l == s) => s.clone(),
        v => {
            return Err(bad(
                "invalid_lora",
                format!(
                    "metadata.loras[{i}].name {} is not a LoRA of {job_type}; allowed: {}",
                    v.map_or_else(|| "(missing)".into(), shown),
                    list.join(", ")
                ),
            ))
        }
    };
    let weight = match item.get("weight") {
        None | Some(Value::Null) => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|w| LORA_WEIGHTS.contains(w))
            .ok_or_else(|| {
                bad(
                    "invalid_lora",
                    format!(
                        "metadata.loras[{i}].weight must be a number from {} to {}",
                        LORA_WEIGHTS.start(),
                        LORA_WEIGHTS.end()
                    ),
                )
            })?,
    };
    Ok(Lora { name, weight })
}

/// A value for an error message: a string quoted and cut at 64 characters.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.chars().take(64).collect::<String>()),
        _ => "a non-string".into(),
    }
}
