//! The demo worker: real outputs without a GPU. [`DemoHandler`] waits a scaled-down
//! version of each type's typical run time (reporting progress), then renders
//! deterministic PNGs ([`render::render_png`]) or a GIF with the type's frame count
//! ([`render::render_gif`]) and uploads them through the worker's storage.
//! [`DemoConfig`] reads the binary's environment.

mod config;
mod loads;
pub mod render;

use std::time::Duration;

use gpuq_schemas::{JobEnvelope, JobKind};
use serde_json::json;

pub use config::DemoConfig;
pub use loads::SimulatedLoads;

use crate::{Asset, Handler, JobContext, JobError, Output};

/// Progress reports while "generating".
const STEPS: u32 = 10;

/// Simulates generation for every job type of the catalog.
#[derive(Debug, Clone)]
pub struct DemoHandler {
    /// Simulated run time = the catalog's `typical_seconds` times this (0 = instant).
    pub time_scale: f64,
    /// Simulated model loads (None: models cost nothing to switch).
    pub loads: Option<SimulatedLoads>,
}

impl Default for DemoHandler {
    fn default() -> Self {
        Self {
            time_scale: 0.02,
            loads: None,
        }
    }
}

/// What the demo's "7B model" makes of a prompt.
pub fn enhance_prompt(prompt: &str) -> String {
    format!("{prompt}, highly detailed, soft cinematic lighting, sharp focus")
}

impl Handler for DemoHandler {
    async fn handle(&self, job: JobEnvelope, ctx: JobContext) -> Result<Output, JobError> {
        let spec = job.job_type.spec();
        if let Some(loads) = &self.loads {
            loads.ensure(job.model_key(), &ctx, self.time_scale).await?;
        }
        let seed = job
            .config
            .seed
            .unwrap_or_else(|| render::seed_for(&job.job_id.to_string()));
        let enhanced = (spec.enhance_prompt || job.config.enhance_prompt).then(|| {
            ctx.progress(0.02, "enhancing prompt");
            enhance_prompt(&job.prompt)
        });
        let total =
            Duration::from_secs_f64(f64::from(spec.typical_seconds) * self.time_scale.max(0.0));
        for step in 1..=STEPS {
            tokio::select! {
                _ = ctx.cancelled() => return Err(JobError::retryable("cancelled")),
                _ = tokio::time::sleep(total / STEPS) => {}
            }
            let fraction = 0.9 * f64::from(step) / f64::from(STEPS);
            ctx.progress(fraction, format!("step {step}/{STEPS}"));
        }
        let output = match spec.kind {
            JobKind::Image => images(&job, &ctx, seed).await?,
            JobKind::Video => video(&job, &ctx, seed).await?,
        };
        ctx.progress(1.0, "uploaded");
        Ok(match enhanced {
            Some(p) => output.with_enhanced_prompt(p),
            None => output,
        })
    }
}

/// Renders on a blocking thread, as real GPU work would run.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, render::RenderError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::retryable(format!("render task: {e}")))?
        .map_err(|e| JobError::permanent(format!("render: {e}")))
}

async fn images(job: &JobEnvelope, ctx: &JobContext, seed: u64) -> Result<Output, JobError> {
    let (w, h) = render::image_size(job.config.width, job.config.height);
    let mut assets = Vec::new();
    for i in 0..job.config.num_images.max(1) {
        let prompt = job.prompt.clone();
        let png = blocking(move || render::render_png(&prompt, seed, i, w, h)).await?;
        let path = ctx.upload(i as usize, "png", png, "image/png").await?;
        let image_seed = seed.wrapping_add(u64::from(i));
        assets.push(
            Asset::new(path)
                .seed(image_seed)
                .size(w, h)
                .metadata(json!({
                    "generator": "gpuq-demo-worker",
                    "requested_width": job.config.width,
                    "requested_height": job.config.height,
                    "steps": job.config.steps,
                })),
        );
    }
    Ok(Output::images(assets))
}

async fn video(job: &JobEnvelope, ctx: &JobContext, seed: u64) -> Result<Output, JobError> {
    let frames = job.config.frames.max(1);
    let prompt = job.prompt.clone();
    let gif = blocking(move || render::render_gif(&prompt, seed, frames)).await?;
    let path = ctx.upload(0, "gif", gif, "image/gif").await?;
    let (w, h) = render::VIDEO_SIZE;
    Ok(Output::video(
        Asset::new(path)
            .seed(seed)
            .size(u32::from(w), u32::from(h))
            .duration(render::gif_duration_seconds(frames))
            .metadata(json!({
                "generator": "gpuq-demo-worker",
                "frames": frames,
                "format": "gif",
            })),
    ))
}
