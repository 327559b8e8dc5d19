//! The job-type catalog: every whitelisted job type and everything the services need to
//! know about it, in one table ([`CATALOG`]). Nothing else in gpuq matches on job types.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a job produces images or a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// One or more still images; one `images` row each.
    Image,
    /// One video; one `videos` row.
    Video,
}

/// Generation defaults for a job type; a request may override each within its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Defaults {
    /// Diffusion steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub guidance: f64,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Frames of video; 1 for images.
    pub frames: u32,
    /// Images per job when the request does not say.
    pub num_images: u32,
}

/// Everything gpuq knows about one job type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobTypeSpec {
    /// The type itself.
    pub job_type: JobType,
    /// The Redis queue its jobs go to.
    pub queue: &'static str,
    /// The model the worker loads.
    pub model_variant: &'static str,
    /// Images or video.
    pub kind: JobKind,
    /// Credits charged per job.
    pub credits: u32,
    /// Typical run time on one GPU, used for ETAs and the demo worker's pacing.
    pub typical_seconds: u32,
    /// Longest one attempt may run, per image asked for, before the worker stops it and
    /// counts it as failed (`execution_timeout`); workers may set their own.
    pub run_limit_seconds: u32,
    /// GiB of GPU memory one job needs (weights, activations, and the 7B prompt model when
    /// it enhances): a routing worker that advertises less never claims it (ADR 0020).
    pub vram_gb: u32,
    /// Deliveries before the job is dead-lettered (first run plus retries).
    pub max_attempts: u32,
    /// Whether the worker first rewrites the prompt with a 7B LLM.
    pub enhance_prompt: bool,
    /// Generation defaults.
    pub defaults: Defaults,
    /// Allowed values of `num_images`.
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<u32>))]
    pub allowed_num_images: &'static [u32],
}

macro_rules! job_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// One of the ten whitelisted job types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum JobType {
            $(#[doc = concat!("`", $name, "`")] #[serde(rename = $name)] $variant,)+
        }

        impl JobType {
            /// Every job type, in catalog order.
            pub const ALL: [JobType; 10] = [$(JobType::$variant),+];

            /// The wire name, e.g. `sdxl_image_fast`.
            pub fn as_str(self) -> &'static str {
                match self { $(JobType::$variant => $name,)+ }
            }
        }
    };
}

job_types! {
    SdxlImageFast => "sdxl_image_fast",
    SdxlImageHigh => "sdxl_image_high",
    ImageFast => "image_fast",
    ImageHigh => "image_high",
    VideoFast => "video_fast",
    VideoHigh => "video_high",
    Image7bFastEnhanced => "image7b_fast_enhanced",
    Image7bHighEnhanced => "image7b_high_enhanced",
    Video7bFastEnhanced => "video7b_fast_enhanced",
    Video7bHighEnhanced => "video7b_high_enhanced",
}

/// Queue of the SDXL types.
pub const SDXL_QUEUE: &str = "sdxl_queue";
/// Queue of the WAN types.
pub const WAN_QUEUE: &str = "wan_queue";

const SDXL: &str = "lustify_sdxl";
const WAN: &str = "wan_2_1_1_3b";
const SDXL_IMAGES: &[u32] = &[1, 3, 6];
const ONE: &[u32] = &[1];

const fn d(steps: u32, guidance: f64, width: u32, height: u32, frames: u32) -> Defaults {
    Defaults {
        steps,
        guidance,
        width,
        height,
        frames,
        num_images: 1,
    }
}

// One positional argument per catalog column keeps the table below one row per type.
#[allow(clippy::too_many_arguments)]
#[rustfmt::skip]
const fn spec(
    job_type: JobType, queue: &'static str, model_variant: &'static str, kind: JobKind,
    credits: u32, typical_seconds: u32, run_limit_seconds: u32, vram_gb: u32,
    max_attempts: u32, enhance_prompt: bool, defaults: Defaults,
    allowed_num_images: &'static [u32],
) -> JobTypeSpec {
    JobTypeSpec {
        job_type, queue, model_variant, kind, credits, typical_seconds, run_limit_seconds,
        vram_gb, max_attempts, enhance_prompt, defaults, allowed_num_images,
    }
}

use JobKind::{Image, Video};
use JobType::*;

/// The catalog. Columns: type, queue, model, kind, credits, typical seconds, run limit
/// seconds (ten times typical, at least a minute: a slow GPU is not a hung one), VRAM GiB
/// (SDXL at 1024² in fp16; WAN 1.3B with its text encoder, more for 83 video frames; the 7B
/// prompt model in 8 bits adds 8), max attempts, prompt enhancement, defaults (steps, guidance, width, height, frames), allowed
/// image counts.
#[rustfmt::skip]
pub static CATALOG: [JobTypeSpec; 10] = [
    spec(SdxlImageFast,       SDXL_QUEUE, SDXL, Image, 1,   6,   60, 10, 3, false, d(15, 6.0, 1024, 1024,  1), SDXL_IMAGES),
    spec(SdxlImageHigh,       SDXL_QUEUE, SDXL, Image, 2,  12,  120, 10, 3, false, d(30, 7.5, 1024, 1024,  1), SDXL_IMAGES),
    spec(ImageFast,           WAN_QUEUE,  WAN,  Image, 1,  30,  300, 12, 3, false, d(25, 5.0,  832,  480,  1), ONE),
    spec(ImageHigh,           WAN_QUEUE,  WAN,  Image, 2,  90,  900, 12, 3, false, d(50, 5.0,  832,  480,  1), ONE),
    spec(VideoFast,           WAN_QUEUE,  WAN,  Video, 3, 150, 1500, 16, 2, false, d(25, 5.0,  832,  480, 83), ONE),
    spec(VideoHigh,           WAN_QUEUE,  WAN,  Video, 5, 280, 2800, 16, 2, false, d(50, 5.0,  832,  480, 83), ONE),
    spec(Image7bFastEnhanced, WAN_QUEUE,  WAN,  Image, 2,  45,  450, 20, 3, true,  d(25, 5.0,  832,  480,  1), ONE),
    spec(Image7bHighEnhanced, WAN_QUEUE,  WAN,  Image, 3, 100, 1000, 20, 3, true,  d(50, 5.0,  832,  480,  1), ONE),
    spec(Video7bFastEnhanced, WAN_QUEUE,  WAN,  Video, 4, 165, 1650, 24, 2, true,  d(25, 5.0,  832,  480, 83), ONE),
    spec(Video7bHighEnhanced, WAN_QUEUE,  WAN,  Video, 6, 300, 3000, 24, 2, true,  d(50, 5.0,  832,  480, 83), ONE),
];

impl JobType {
    /// This type's row of the catalog.
    pub fn spec(self) -> &'static JobTypeSpec {
        // The catalog lists the variants in declaration order; a unit test checks it.
        &CATALOG[self as usize]
    }

    /// All wire names, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().map(Self::as_str)
    }
}

/// A job type not in the catalog. Its message lists the valid ones.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job type {given:?}; valid types: {}", JobType::names().collect::<Vec<_>>().join(", "))]
pub struct UnknownJobType {
    /// What was given (truncated to 64 characters).
    pub given: String,
}

impl FromStr for JobType {
    type Err = UnknownJobType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownJobType {
                given: s.chars().take(64).collect(),
            })
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OpenAPI schema of [`JobType`]: a string, one of [`JobType::names`] — written by hand
/// because utoipa's derive does not see the `serde(rename)` a `macro_rules!` passes it, and
/// would publish the Rust variant names.
#[cfg(feature = "utoipa")]
impl utoipa::PartialSchema for JobType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(JobType::names()))
            .description(Some(
                "One of the ten whitelisted job types (`GET /v1/job-types`).",
            ))
            .into()
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::ToSchema for JobType {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_rows_are_in_variant_order() {
        for t in JobType::ALL {
            assert_eq!(t.spec().job_type, t);
        }
    }

    #[test]
    fn design_table_holds() {
        let row = |t: JobType| {
            let s = t.spec();
            (s.queue, s.model_variant, s.kind, s.credits)
        };
        assert_eq!(row(SdxlImageFast), (SDXL_QUEUE, SDXL, Image, 1));
        assert_eq!(row(SdxlImageHigh), (SDXL_QUEUE, SDXL, Image, 2));
        assert_eq!(row(ImageFast), (WAN_QUEUE, WAN, Image, 1));
        assert_eq!(row(ImageHigh), (WAN_QUEUE, WAN, Image, 2));
        assert_eq!(row(VideoFast), (WAN_QUEUE, WAN, Video, 3));
        assert_eq!(row(VideoHigh), (WAN_QUEUE, WAN, Video, 5));
        assert_eq!(row(Image7bFastEnhanced), (WAN_QUEUE, WAN, Image, 2));
        assert_eq!(row(Image7bHighEnhanced), (WAN_QUEUE, WAN, Image, 3));
        assert_eq!(row(Video7bFastEnhanced), (WAN_QUEUE, WAN, Video, 4));
        assert_eq!(row(Video7bHighEnhanced), (WAN_QUEUE, WAN, Video, 6));
    }

    #[test]
    fn names_round_trip() {
        for t in JobType::ALL {
            assert_eq!(t.as_str().parse::<JobType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn unknown_type_lists_every_valid_one() {
        let err = "sdxl_image_ultra".parse::<JobType>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sdxl_image_ultra"));
        for name in JobType::names() {
            assert!(msg.contains(name), "{name} missing from {msg}");
        }
    }

    #[test]
    fn only_enhanced_types_enhance_and_videos_have_frames() {
        for s in &CATALOG {
            assert_eq!(s.enhance_prompt, s.job_type.as_str().contains("7b"));
            assert_eq!(s.kind == Video, s.defaults.frames > 1);
            assert!(s.max_attempts >= 1);
        }
    }
}
