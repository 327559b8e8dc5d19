//! Turning a `completed` callback's outputs into the `images` / `videos` rows to insert:
//! every path normalized, every number checked against its column, before anything is
//! written.

use std::collections::HashMap;

use gpuq_schemas::{JobKind, OutputAsset};
use serde_json::Value;

use super::job::Job;
use crate::storage_path::{normalize, PathRejection, StoragePath, StorageRules};

/// One row of `images` or `videos`.
#[derive(Debug, Clone)]
pub(crate) struct OutputRow {
    /// `image_index` / `video_index`: the position among the job's outputs.
    pub index: i32,
    pub path: StoragePath,
    /// The thumbnail's key when it is in the row's bucket, else `<bucket>/<key>` (keys
    /// start with a UUID and bucket names never do, so the two forms cannot be confused).
    pub thumbnail: Option<String>,
    pub seed: Option<i64>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_seconds: Option<f64>,
    pub metadata: Value,
}

/// Why the outputs of a `completed` callback cannot be recorded. Answered with 422; the
/// message names the output and is safe to return.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutputError {
    /// A path or thumbnail path was refused.
    #[error("output {index} {field} {reported:?} rejected: {reason}")]
    Path {
        /// Position of the output.
        index: usize,
        /// `path` or `thumbnail`.
        field: &'static str,
        /// What the worker sent (truncated).
        reported: String,
        /// Why.
        reason: PathRejection,
    },
    /// No output at all.
    #[error("a completed callback must report at least one {0} output")]
    Missing(&'static str),
    /// A video from an image job.
    #[error("output {index} is a video but this job type produces images")]
    KindMismatch {
        /// Position of the output.
        index: usize,
    },
    /// A number that does not fit its column.
    #[error("output {index}: {what}")]
    Invalid {
        /// Position of the output.
        index: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Two outputs name one file.
    #[error("outputs {first} and {second} name the same file")]
    Duplicate {
        /// Earlier position.
        first: usize,
        /// Later position.
        second: usize,
    },
    /// A path outside the job's own folder (`<user>/<job>/...`) that is not a bare file
    /// under the user, or a bare file that names another job.
    #[error("output {index} {field} {key:?} is not this job's: outputs go under <user>/<job>/")]
    NotThisJob {
        /// Position of the output.
        index: usize,
        /// `path` or `thumbnail`.
        field: &'static str,
        /// The normalized key (truncated).
        key: String,
    },
    /// More outputs than the job asked for.
    #[error("{reported} {kind} outputs reported; this job makes at most {max}")]
    TooMany {
        /// Outputs reported.
        reported: usize,
        /// The most the job makes.
        max: usize,
        /// `image` or `video`.
        kind: &'static str,
    },
}

impl OutputError {
    /// The machine-readable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Path { .. } => "invalid_storage_path",
            Self::Missing(_) => "missing_outputs",
            Self::KindMismatch { .. } => "output_kind_mismatch",
            Self::Invalid { .. } => "invalid_output",
            Self::Duplicate { .. } => "duplicate_output",
            Self::NotThisJob { .. } => "output_not_this_job",
            Self::TooMany { .. } => "too_many_outputs",
        }
    }
}

fn kind_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Image => "image",
        JobKind::Video => "video",
    }
}

/// The rows for `outputs` of `job`. Image jobs get one row per output. Video jobs get one
/// row per video output; image outputs of a video job (legacy workers send the poster
/// frame as an `image` asset) become the first video's thumbnail when it has none.
pub(crate) fn build(
    job: &Job,
    outputs: &[OutputAsset],
    rules: &StorageRules,
) -> Result<Vec<OutputRow>, OutputError> {
    let kind = job.kind();
    // A thumbnail or poster per output at most: anything beyond is not a real completion.
    let max = job.max_outputs();
    if outputs.len() > 2 * max + 2 {
        return Err(OutputError::TooMany {
            reported: outputs.len(),
            max,
            kind: kind_name(kind),
        });
    }
    let bucket = job.job_type.as_str();
    let norm = |index: usize, field: &'static str, reported: &str| {
        let path =
            normalize(reported, job.user, bucket, rules).map_err(|reason| OutputError::Path {
                index,
                field,
                reported: reported.chars().take(200).collect(),
                reason,
            })?;
        if !belongs_to(job, path.key()) {
            return Err(OutputError::NotThisJob {
                index,
                field,
                key: path.key().chars().take(200).collect(),
            });
        }
        Ok(path)
    };
    let mut rows: Vec<OutputRow> = Vec::new();
    let mut posters = Vec::new();
    let mut seen = HashMap::new();
    for (index, out) in outputs.iter().enumerate() {
        let path = norm(index, "path", &out.path)?;
        match (kind, out.kind) {
            (JobKind::Image, Some(JobKind::Video)) => {
                return Err(OutputError::KindMismatch { index })
            }
            (JobKind::Video, Some(JobKind::Image)) => {
                posters.push(path);
                continue;
            }
            _ => {}
        }
        if let Some(first) = seen.insert(path.clone(), index) {
            return Err(OutputError::Duplicate {
                first,
                second: index,
            });
        }
        let thumbnail = match &out.thumbnail_path {
            Some(t) => Some(norm(index, "thumbnail", t)?),
            None => None,
        };
        rows.push(row(rows.len(), index, path, thumbnail, out)?);
    }
    if let (Some(first), Some(poster)) = (rows.first_mut(), posters.into_iter().next()) {
        if first.thumbnail.is_none() {
            first.thumbnail = Some(thumbnail_ref(&first.path, &poster));
        }
    }
    if rows.is_empty() {
        return Err(OutputError::Missing(kind_name(kind)));
    }
    if rows.len() > max {
        return Err(OutputError::TooMany {
            reported: rows.len(),
            max,
            kind: kind_name(kind),
        });
    }
    Ok(rows)
}

/// Whether `key` (already scoped to the job's owner: `<user>/...`) is the job's: under its
/// own folder `<user>/<job>/`, or a bare file under the user (`<user>/<file>`, the legacy
/// layouts) that names no other job.
fn belongs_to(job: &Job, key: &str) -> bool {
    let job_id = job.id.to_string();
    let rest = key.split_once('/').map_or("", |(_, rest)| rest);
    match rest.split_once('/') {
        Some((folder, _)) => folder.eq_ignore_ascii_case(&job_id),
        None => uuids_in(rest).all(|u| u == job.id.as_uuid()),
    }
}

/// The UUIDs written anywhere in `text` (`sdxl_<job>_<unix>_0.png` names its job).
fn uuids_in(text: &str) -> impl Iterator<Item = uuid::Uuid> + '_ {
    (0..text.len().saturating_sub(35))
        .filter_map(move |i| text.get(i..i + 36))
        .filter_map(|s| uuid::Uuid::try_parse(s).ok())
}

fn thumbnail_ref(of: &StoragePath, thumb: &StoragePath) -> String {
    if thumb.bucket() == of.bucket() {
        thumb.key().to_owned()
    } else {
        thumb.to_string()
    }
}

fn row(
    position: usize,
    index: usize,
    path: StoragePath,
    thumbnail: Option<StoragePath>,
    out: &OutputAsset,
) -> Result<OutputRow, OutputError> {
    let invalid = |what| OutputError::Invalid { index, what };
    let seed = match out.seed {
        Some(s) if s > u64::from(u32::MAX) => return Err(invalid("seed must fit in 32 bits")),
        s => s.map(|s| s as i64),
    };
    let dim = |v: Option<u32>| {
        v.map(i32::try_from)
            .transpose()
            .map_err(|_| invalid("width or height too large"))
    };
    if out
        .duration_seconds
        .is_some_and(|d| !d.is_finite() || d < 0.0)
    {
        return Err(invalid("duration_seconds must be a non-negative number"));
    }
    Ok(OutputRow {
        index: i32::try_from(position).map_err(|_| invalid("too many outputs"))?,
        thumbnail: thumbnail.map(|t| thumbnail_ref(&path, &t)),
        path,
        seed,
        width: dim(out.width)?,
        height: dim(out.height)?,
        duration_seconds: out.duration_seconds,
        metadata: match &out.metadata {
            Value::Null => Value::Object(Default::default()),
            v => v.clone(),
        },
    })
}
