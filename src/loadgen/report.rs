//! Latency percentiles and counts, printed at the end of a run.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Report {
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Responses by status code; 0 counts transport errors (no response).
    pub statuses: BTreeMap<u16, u64>,
}

impl Report {
    pub fn requests(&self) -> usize {
        self.latencies.len()
    }

    /// The latency at quantile `q` (0 to 1).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64) * q).ceil() as usize;
        sorted
            .get(index.saturating_sub(1).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let rps = self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| {
                format!(
                    "{}={n}",
                    if *s == 0 {
                        "error".into()
                    } else {
                        s.to_string()
                    }
                )
            })
            .collect();
        format!(
            "requests {} in {:.2} s = {rps:.0} req/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; statuses {}",
            self.requests(),
            self.elapsed.as_secs_f64(),
            ms(self.quantile(0.50)),
            ms(self.quantile(0.90)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            statuses.join(" ")
        )
    }
}
