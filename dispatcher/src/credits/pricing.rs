//! [`CreditSettings`] and the [`Price`] of a job.

use std::collections::HashMap;

use serde::Deserialize;

use gpuq_schemas::{JobKind, JobType};

/// How jobs are priced and whether the price is enforced (`credits` in the configuration).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreditSettings {
    /// Hold each job's price at enqueue and refuse a job its tenant cannot cover with 402
    /// `insufficient_credits` (`GPUQ_CREDITS`). Off (the default, as a drop-in replacement
    /// must not start refusing jobs): nothing is held or charged.
    #[serde(default)]
    pub enabled: bool,
    /// Credits a tenant's account starts with, granted when its first priced job arrives
    /// (`GPUQ_STARTING_CREDITS`).
    #[serde(default)]
    pub starting_grant: u32,
    /// Metered pricing: credits per GPU-second, by job type (files only:
    /// `credits: {per_gpu_second: {video_high: 0.05}}`). A type not listed has the fixed
    /// price of the catalog: its credits per image, or per video.
    #[serde(default)]
    pub per_gpu_second: HashMap<JobType, Rate>,
    /// The most GPU-seconds a metered job of the type is charged for; its hold is this
    /// times its rate. Default: four times the catalog's typical run time of the job.
    #[serde(default)]
    pub hold_gpu_seconds: HashMap<JobType, u32>,
}

/// A metered rate: credits per GPU-second, above 0 and at most 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Rate(f64);

impl TryFrom<f64> for Rate {
    type Error = String;

    fn try_from(rate: f64) -> Result<Self, Self::Error> {
        if rate.is_finite() && rate > 0.0 && rate <= 1e6 {
            Ok(Self(rate))
        } else {
            Err(format!(
                "a rate is above 0 and at most 1000000 credits per GPU-second, not {rate}"
            ))
        }
    }
}

/// What a job holds at enqueue and how it settles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Credits held: the price, or for a metered job the most it may cost.
    pub amount: i64,
    /// Metered: credits per measured GPU-second, charged up to `amount`.
    pub per_gpu_second: Option<f64>,
}

impl CreditSettings {
    /// The price of a `job_type` job of `num_images` images; None while credits are off.
    /// Never trusts a client's figure: the catalog and this configuration decide.
    pub fn price(&self, job_type: JobType, num_images: u32) -> Option<Price> {
        if !self.enabled {
            return None;
        }
        let spec = job_type.spec();
        let outputs = match spec.kind {
            JobKind::Image => i64::from(num_images.max(1)),
            JobKind::Video => 1,
        };
        Some(match self.per_gpu_second.get(&job_type) {
            None => Price {
                amount: i64::from(spec.credits) * outputs,
                per_gpu_second: None,
            },
            Some(Rate(rate)) => {
                let most = self
                    .hold_gpu_seconds
                    .get(&job_type)
                    .map_or(4 * i64::from(spec.typical_seconds) * outputs, |s| {
                        i64::from(*s)
                    });
                Price {
                    // At least one credit: a hold of nothing would not be a hold.
                    amount: ((most as f64) * rate).ceil().max(1.0) as i64,
                    per_gpu_second: Some(*rate),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> CreditSettings {
        CreditSettings {
            enabled: true,
            ..CreditSettings::default()
        }
    }

    #[test]
    fn nothing_is_priced_while_credits_are_off() {
        assert_eq!(CreditSettings::default().price(JobType::VideoHigh, 1), None);
    }

    #[test]
    fn a_fixed_price_is_the_catalogs_credits_per_image_or_per_video() {
        let s = on();
        assert_eq!(s.price(JobType::SdxlImageHigh, 3).unwrap().amount, 6);
        assert_eq!(s.price(JobType::VideoHigh, 1).unwrap().amount, 5);
        assert_eq!(s.price(JobType::VideoHigh, 4).unwrap().amount, 5);
        assert_eq!(s.price(JobType::ImageFast, 0).unwrap().amount, 1);
    }

    #[test]
    fn a_metered_hold_is_the_rate_times_the_most_gpu_seconds_rounded_up() {
        let mut s = on();
        s.per_gpu_second
            .insert(JobType::VideoHigh, Rate::try_from(0.01).unwrap());
        let p = s.price(JobType::VideoHigh, 1).unwrap();
        assert_eq!(p.amount, 12, "4 × 280 s × 0.01, rounded up");
        assert_eq!(p.per_gpu_second, Some(0.01));
        s.hold_gpu_seconds.insert(JobType::VideoHigh, 50);
        assert_eq!(s.price(JobType::VideoHigh, 1).unwrap().amount, 1);
    }

    #[test]
    fn a_rate_outside_its_range_is_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(Rate::try_from(bad).is_err(), "{bad}");
        }
    }
}
