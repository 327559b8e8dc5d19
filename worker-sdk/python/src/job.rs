//! `Job` and `JobConfig`: the job a handler receives, as typed, read-only fields (the
//! envelope of `docs/protocol.md`), not a dict of strings.

use gpuq_schemas::{GenerationConfig, JobEnvelope};
use pyo3::prelude::*;

/// One job, as the dispatcher accepted it.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct Job {
    /// The job's id (a UUID).
    #[pyo3(get)]
    id: String,
    /// Its type, e.g. `sdxl_image_fast`.
    #[pyo3(get)]
    job_type: String,
    /// The queue it came from.
    #[pyo3(get)]
    queue: String,
    /// The prompt; empty only in exact-copy mode.
    #[pyo3(get)]
    prompt: String,
    #[pyo3(get)]
    negative_prompt: Option<String>,
    /// The final generation parameters.
    #[pyo3(get)]
    config: Py<JobConfig>,
    /// The owner; every output key starts with this id.
    #[pyo3(get)]
    user_id: String,
    /// Whose fair share the job counts against, when not its owner.
    #[pyo3(get)]
    tenant: Option<String>,
    /// The storage bucket outputs go to.
    #[pyo3(get)]
    bucket: String,
    /// The type's model.
    #[pyo3(get)]
    model_variant: String,
    /// The checkpoint the job names, from its type's allow-list; None: `model_variant`.
    #[pyo3(get)]
    model: Option<String>,
    /// The LoRAs to apply, in order, as (name, weight).
    #[pyo3(get)]
    loras: Vec<(String, f64)>,
    /// GiB of GPU memory the job needs, when its envelope says.
    #[pyo3(get)]
    vram_gb: Option<u32>,
    /// What the job needs loaded: `model`, else `model_variant`. Say it is loaded with
    /// `ctx.loaded(job.model_key)` (model routing, ADR 0020).
    #[pyo3(get)]
    model_key: String,
    /// This delivery's attempt, from 1.
    #[pyo3(get)]
    attempt: u32,
    /// Deliveries allowed before the job is dead-lettered.
    #[pyo3(get)]
    max_attempts: u32,
    /// When it was accepted (RFC 3339).
    #[pyo3(get)]
    created_at: String,
    /// The app's metadata, as JSON; `metadata` decodes it.
    metadata_json: String,
}

#[pymethods]
impl Job {
    /// The app's metadata (project, video and image ids included), decoded on each call.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.metadata_json.as_str(),))
    }

    fn __repr__(&self) -> String {
        format!(
            "Job(id={:?}, job_type={:?}, attempt={})",
            self.id, self.job_type, self.attempt
        )
    }
}

impl Job {
    pub(crate) fn new(py: Python<'_>, env: JobEnvelope) -> PyResult<Self> {
        let model_key = env.model_key().to_owned();
        Ok(Self {
            id: env.job_id.to_string(),
            job_type: env.job_type.to_string(),
            queue: env.queue,
            prompt: env.prompt,
            negative_prompt: env.negative_prompt,
            config: Py::new(py, JobConfig::from(env.config))?,
            user_id: env.user_id.to_string(),
            tenant: env.tenant.map(|t| t.to_string()),
            bucket: env.bucket,
            model_key,
            model: env.model.clone(),
            loras: env
                .loras
                .iter()
                .map(|l| (l.name.clone(), l.weight))
                .collect(),
            vram_gb: env.vram_gb,
            model_variant: env.model_variant,
            attempt: env.attempt,
            max_attempts: env.max_attempts,
            created_at: env.created_at.to_rfc3339(),
            metadata_json: env.metadata.to_string(),
        })
    }
}

/// A job's generation parameters.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct JobConfig {
    /// Diffusion steps, 1..=150.
    #[pyo3(get)]
    steps: u32,
    /// Guidance scale, 0..=30.
    #[pyo3(get)]
    guidance: f64,
    #[pyo3(get)]
    width: u32,
    #[pyo3(get)]
    height: u32,
    /// Video frames; 1 for images.
    #[pyo3(get)]
    frames: u32,
    /// Images to produce.
    #[pyo3(get)]
    num_images: u32,
    /// Absent: the worker picks one and reports it.
    #[pyo3(get)]
    seed: Option<u64>,
    /// A storage key under the owner's id, or a URL on an allow-listed host.
    #[pyo3(get)]
    reference_image: Option<String>,
    #[pyo3(get)]
    reference_strength: Option<f64>,
    #[pyo3(get)]
    denoise_strength: Option<f64>,
    #[pyo3(get)]
    exact_copy: bool,
    /// Rewrite the prompt with the 7B model first.
    #[pyo3(get)]
    enhance_prompt: bool,
}

#[pymethods]
impl JobConfig {
    fn __repr__(&self) -> String {
        format!(
            "JobConfig(steps={}, width={}, height={}, frames={}, num_images={}, seed={:?})",
            self.steps, self.width, self.height, self.frames, self.num_images, self.seed
        )
    }
}

impl From<GenerationConfig> for JobConfig {
    fn from(c: GenerationConfig) -> Self {
        Self {
            steps: c.steps,
            guidance: c.guidance,
            width: c.width,
            height: c.height,
            frames: c.frames,
            num_images: c.num_images,
            seed: c.seed,
            reference_image: c.reference_image,
            reference_strength: c.reference_strength,
            denoise_strength: c.denoise_strength,
            exact_copy: c.exact_copy,
            enhance_prompt: c.enhance_prompt,
        }
    }
}
