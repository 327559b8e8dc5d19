//! A `/metrics` answer in the text format the scraper asked for.
//!
//! The services' metrics are encoded by `prometheus-client`, which writes only OpenMetrics.
//! Prometheus asks for OpenMetrics first, but `promtool check metrics`, older Prometheus
//! servers and many other scrapers read only the classic text format 0.0.4, and read
//! OpenMetrics counters wrongly there: OpenMetrics names a counter family `x` with samples
//! `x_total`, so a 0.0.4 parser sees samples of an unknown `x_total` with no help text. So
//! the `Accept` header decides (as Prometheus' content-negotiation guide says: the highest
//! q-value wins, and the classic format is the fallback), and [`to_text_004`] turns the
//! crate's output into the classic format. The two formats differ only in what that
//! function changes for the metric kinds gpuq registers (counters, gauges, histograms).

use actix_web::http::header::{self, Header};
use actix_web::{HttpRequest, HttpResponse};

/// `Content-Type` of an OpenMetrics answer.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of a classic text-format answer.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`, also for `*/*`, anything unknown and no `Accept`.
    Text004,
}

/// Reads the `Accept` header: the supported type with the highest q-value (earliest on a tie).
pub fn negotiate(req: &HttpRequest) -> Format {
    let Ok(accept) = header::Accept::parse(req) else {
        return Format::Text004;
    };
    accept
        .ranked()
        .into_iter()
        .find_map(
            |mime| match (mime.type_().as_str(), mime.subtype().as_str()) {
                ("application", "openmetrics-text") => Some(Format::OpenMetrics),
                ("text", "plain") | ("text", "*") | ("*", "*") => Some(Format::Text004),
                _ => None,
            },
        )
        .unwrap_or(Format::Text004)
}

/// The scrape answer for `openmetrics` (the encoder's output) in the negotiated format.
pub fn answer(req: &HttpRequest, openmetrics: String) -> HttpResponse {
    match negotiate(req) {
        Format::OpenMetrics => HttpResponse::Ok()
            .content_type(OPENMETRICS)
            .body(openmetrics),
        Format::Text004 => HttpResponse::Ok()
            .content_type(TEXT_004)
            .body(to_text_004(&openmetrics)),
    }
}

/// OpenMetrics text → the classic text format 0.0.4: a counter family takes its samples'
/// `_total` name in `# HELP` and `# TYPE`; `unknown` is `untyped`; `# UNIT`, `# EOF` and
/// exemplars go (0.0.4 has none of them).
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let family_name = |name: &str| {
        if counters.contains(&name) && !name.ends_with("_total") {
            format!("{name}_total")
        } else {
            name.to_owned()
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            format!("# HELP {} {help}", family_name(name))
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = if kind == "unknown" { "untyped" } else { kind };
            format!("# TYPE {} {kind}", family_name(name))
        } else {
            // A sample: label values are quoted, so " # " outside them starts an exemplar.
            without_exemplar(line).to_owned()
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

/// `line` without a trailing ` # {...} value` exemplar.
fn without_exemplar(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted && line[..i].ends_with(' ') => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const OM: &str = "# HELP gpuq_jobs_enqueued Jobs accepted.\n\
# TYPE gpuq_jobs_enqueued counter\n\
gpuq_jobs_enqueued_total{job_type=\"sdxl # x\"} 3 # {trace_id=\"a\"} 1.0\n\
# HELP gpuq_wait_seconds Oldest wait.\n\
# TYPE gpuq_wait_seconds gauge\n\
# UNIT gpuq_wait_seconds seconds\n\
gpuq_wait_seconds{queue=\"sdxl_queue\"} 0.5\n\
# HELP gpuq_thing Something.\n\
# TYPE gpuq_thing unknown\n\
gpuq_thing 1\n\
# EOF\n";

    #[test]
    fn counters_take_their_samples_name_and_openmetrics_only_lines_go() {
        let text = to_text_004(OM);
        assert_eq!(
            text,
            "# HELP gpuq_jobs_enqueued_total Jobs accepted.\n\
# TYPE gpuq_jobs_enqueued_total counter\n\
gpuq_jobs_enqueued_total{job_type=\"sdxl # x\"} 3\n\
# HELP gpuq_wait_seconds Oldest wait.\n\
# TYPE gpuq_wait_seconds gauge\n\
gpuq_wait_seconds{queue=\"sdxl_queue\"} 0.5\n\
# HELP gpuq_thing Something.\n\
# TYPE gpuq_thing untyped\n\
gpuq_thing 1\n"
        );
    }

    fn format_for(accept: Option<&str>) -> Format {
        let mut req = TestRequest::get();
        if let Some(a) = accept {
            req = req.insert_header((header::ACCEPT, a));
        }
        negotiate(&req.to_http_request())
    }

    #[test]
    fn the_highest_q_value_among_supported_types_wins_and_text_is_the_fallback() {
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(format_for(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            format_for(Some("text/plain;version=0.0.4")),
            Format::Text004
        );
        assert_eq!(
            format_for(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.2"
            )),
            Format::Text004
        );
        assert_eq!(format_for(Some("application/json")), Format::Text004);
        assert_eq!(format_for(Some("*/*")), Format::Text004);
        assert_eq!(format_for(None), Format::Text004);
    }
}
