//! The service's own account of a run: `/metrics` scraped before and after, and the difference of
//! the per-stage histograms (`voltage_webhook_stage_seconds`, `voltage_webhook_request_seconds`)
//! summarised per stage: how many deliveries reached it, their mean, and p50/p99 interpolated
//! within the histogram's buckets (as Prometheus' `histogram_quantile` does). Only this run's
//! deliveries count, whatever the service served before; other traffic at the same time would
//! count too.

use std::collections::BTreeMap;

// The service's metric names: the load generator does not depend on the service, so they are
// repeated here, and the service's tests check that both say the same (tests/it/loadgen.rs).
/// The per-stage histogram, labelled `stage`.
pub const WEBHOOK_STAGE_SECONDS: &str = "voltage_webhook_stage_seconds";
/// The whole request's histogram.
pub const WEBHOOK_REQUEST_SECONDS: &str = "voltage_webhook_request_seconds";
/// The stages, in the order a delivery passes them.
pub const WEBHOOK_STAGES: [&str; 6] = [
    "read_body",
    "verify",
    "parse",
    "batch_wait",
    "write",
    "answer",
];

/// `/metrics` as text; an error names the URL.
pub async fn scrape(url: &str) -> anyhow::Result<String> {
    let response = reqwest::get(url).await?.error_for_status()?;
    Ok(response.text().await?)
}

/// One histogram: cumulative bucket counts by upper bound (`+Inf` included, ascending), the sum
/// and the count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

/// The histograms of `name` in `text`, keyed by the value of `label` (empty without it).
fn histograms(text: &str, name: &str, label: &str) -> BTreeMap<String, Histogram> {
    let mut found: BTreeMap<String, Histogram> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (metric, labels) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let key = labels.get(label).copied().unwrap_or("").to_owned();
        let histogram = found.entry(key).or_default();
        match &metric[name.len()..] {
            "_bucket" => {
                let bound = match labels.get("le") {
                    Some(&"+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(b) => b,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                histogram.buckets.push((bound, value));
            }
            "_sum" => histogram.sum = value,
            "_count" => histogram.count = value,
            _ => {}
        }
    }
    for histogram in found.values_mut() {
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    found
}

impl Histogram {
    /// `self - before`, bucket by bucket.
    fn since(&self, before: Option<&Histogram>) -> Histogram {
        let Some(before) = before else {
            return self.clone();
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(bound, n)| {
                    let earlier = before
                        .buckets
                        .iter()
                        .find(|(b, _)| b.total_cmp(&bound).is_eq())
                        .map_or(0.0, |(_, n)| *n);
                    (bound, n - earlier)
                })
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The value at quantile `q`, linear within its bucket; in the `+Inf` bucket, the largest
    /// finite bound (the true value is above it).
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let inside = cumulative - below;
                let share = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (bound - lower) * share);
            }
            lower = bound;
            below = cumulative;
        }
        Some(lower)
    }
}

/// The per-stage table for the deliveries between the two scrapes.
pub fn summary(before: &str, after: &str) -> Vec<String> {
    let (stages_before, stages_after) = (
        histograms(before, WEBHOOK_STAGE_SECONDS, "stage"),
        histograms(after, WEBHOOK_STAGE_SECONDS, "stage"),
    );
    let (total_before, total_after) = (
        histograms(before, WEBHOOK_REQUEST_SECONDS, ""),
        histograms(after, WEBHOOK_REQUEST_SECONDS, ""),
    );
    let mut rows: Vec<(&str, Histogram)> = WEBHOOK_STAGES
        .iter()
        .filter_map(|stage| {
            let after = stages_after.get(*stage)?;
            Some((*stage, after.since(stages_before.get(*stage))))
        })
        .collect();
    if let Some(after) = total_after.get("") {
        rows.push(("request", after.since(total_before.get(""))));
    }
    if rows.is_empty() {
        return vec![format!(
            "server stages: no {WEBHOOK_STAGE_SECONDS} in /metrics (an older service?)"
        )];
    }
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.3}", v * 1e3));
    let mut lines = vec![
        "server stages (this run, from /metrics; p50/p99 interpolated within buckets):".to_owned(),
        format!(
            "  {:<10} {:>10} {:>10} {:>10} {:>10}",
            "stage", "count", "mean ms", "p50 ms", "p99 ms"
        ),
    ];
    for (stage, h) in rows {
        let mean = (h.count > 0.0).then(|| h.sum / h.count);
        lines.push(format!(
            "  {:<10} {:>10} {:>10} {:>10} {:>10}",
            stage,
            h.count,
            ms(mean),
            ms(h.quantile(0.50)),
            ms(h.quantile(0.99)),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE voltage_webhook_stage_seconds histogram
voltage_webhook_stage_seconds_bucket{stage=\"verify\",le=\"0.001\"} 10
voltage_webhook_stage_seconds_bucket{stage=\"verify\",le=\"0.01\"} 10
voltage_webhook_stage_seconds_bucket{stage=\"verify\",le=\"+Inf\"} 10
voltage_webhook_stage_seconds_sum{stage=\"verify\"} 0.005
voltage_webhook_stage_seconds_count{stage=\"verify\"} 10
";
    const AFTER: &str = "\
voltage_webhook_stage_seconds_bucket{stage=\"verify\",le=\"0.001\"} 60
voltage_webhook_stage_seconds_bucket{stage=\"verify\",le=\"0.01\"} 110
voltage_webhook_stage_seconds_bucket{stage=\"verify\",le=\"+Inf\"} 110
voltage_webhook_stage_seconds_sum{stage=\"verify\"} 0.305
voltage_webhook_stage_seconds_count{stage=\"verify\"} 110
voltage_webhook_request_seconds_bucket{le=\"0.01\"} 4
voltage_webhook_request_seconds_bucket{le=\"+Inf\"} 5
voltage_webhook_request_seconds_sum 1.5
voltage_webhook_request_seconds_count 5
";

    #[test]
    fn only_the_runs_deliveries_count_and_quantiles_interpolate_within_buckets() {
        let lines = summary(BEFORE, AFTER);
        // 100 deliveries of the run: 50 under 1 ms, 50 from 1 to 10 ms, 0.3 s in all.
        let verify = lines
            .iter()
            .find(|l| l.trim_start().starts_with("verify"))
            .expect("a verify row");
        let cells: Vec<&str> = verify.split_whitespace().collect();
        assert_eq!(
            cells,
            ["verify", "100", "3.000", "1.000", "9.820"],
            "{lines:#?}"
        );
        // The p99 of the whole request is past the last finite bound: that bound is shown.
        let request = lines
            .iter()
            .find(|l| l.trim_start().starts_with("request"))
            .expect("a request row");
        let cells: Vec<&str> = request.split_whitespace().collect();
        assert_eq!(
            cells,
            ["request", "5", "300.000", "6.250", "10.000"],
            "{lines:#?}"
        );
    }
}
