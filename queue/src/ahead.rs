//! [`WorkAhead`]: the work expected to start before a waiting job under the fair share, as
//! the scripts count it, for an ETA in GPU time rather than in jobs.

use gpuq_schemas::Tenant;

use crate::{QueueError, Result};

/// The work ahead of a waiting job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkAhead {
    /// High-lane jobs ahead of a normal job (counted, not costed: their tags are another
    /// lane's virtual time).
    pub high_jobs: u64,
    /// Per tenant, the virtual milliseconds of its jobs ahead: their expected GPU
    /// milliseconds divided by the tenant's weight, since tags advance by cost ÷ weight.
    /// `None` stands for the tenants past the first few, together (weight 1 each).
    pub spans: Vec<(Option<Tenant>, u64)>,
}

impl WorkAhead {
    /// Expected GPU milliseconds of the jobs ahead in the job's own lane, given each
    /// tenant's weight (the high lane's are counted in [`Self::high_jobs`]).
    pub fn gpu_ms(&self, weight: impl Fn(&Tenant) -> u32) -> u64 {
        self.spans
            .iter()
            .map(|(t, span)| span.saturating_mul(u64::from(t.as_ref().map_or(1, &weight))))
            .sum()
    }

    /// Parses the scripts' `{high_jobs, tenant, span, tenant, span, ...}` (tenant '' for
    /// the rest); an empty reply is no work.
    pub(crate) fn parse(script: &'static str, raw: Vec<String>) -> Result<Self> {
        let bad = |detail: String| QueueError::Protocol { script, detail };
        let mut fields = raw.into_iter();
        let Some(high) = fields.next() else {
            return Ok(Self::default());
        };
        let high_jobs = high
            .parse()
            .map_err(|_| bad(format!("bad count {high:?}")))?;
        let mut spans = Vec::new();
        while let (Some(tenant), Some(span)) = (fields.next(), fields.next()) {
            let span = span
                .parse()
                .map_err(|_| bad(format!("bad span {span:?}")))?;
            let tenant = match tenant.as_str() {
                "" => None,
                name => Some(
                    name.parse()
                        .map_err(|_| bad(format!("bad tenant {name:?}")))?,
                ),
            };
            spans.push((tenant, span));
        }
        Ok(Self { high_jobs, spans })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_ahead_weighs_each_tenants_span_by_its_weight() {
        let raw = ["2", "acme", "1000", "", "300"].map(String::from).to_vec();
        let work = WorkAhead::parse("test", raw).unwrap();
        assert_eq!(work.high_jobs, 2);
        let weight = |t: &Tenant| if t.as_str() == "acme" { 3 } else { 7 };
        assert_eq!(work.gpu_ms(weight), 3_000 + 300, "the rest weighs 1");
        assert_eq!(
            WorkAhead::parse("test", vec![]).unwrap(),
            WorkAhead::default()
        );
        assert!(WorkAhead::parse("test", vec!["x".into()]).is_err());
    }
}
