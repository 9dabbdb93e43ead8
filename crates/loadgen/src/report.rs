//! Latency percentiles and counts, printed at the end of a run.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Report {
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// When each request started, from the start of the run (same order as `latencies`).
    pub started: Vec<Duration>,
    /// Each request's status, 0 for a transport error (same order as `latencies`).
    pub codes: Vec<u16>,
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

    /// One line per `window` of the run: requests started in it, their p50, p99 and max latency,
    /// and, when any, the answers other than 2xx by status. Shows whether a tail is spread over the
    /// run or comes from a few stalls, and when failures started and stopped.
    pub fn timeline(&self, window: Duration) -> Vec<String> {
        let width = window.as_secs_f64().max(1e-6);
        let mut windows: BTreeMap<u64, Report> = BTreeMap::new();
        for (i, (started, latency)) in self.started.iter().zip(&self.latencies).enumerate() {
            let index = (started.as_secs_f64() / width) as u64;
            let part = windows.entry(index).or_default();
            part.latencies.push(*latency);
            let code = self.codes.get(i).copied().unwrap_or(200);
            if !(200..300).contains(&code) {
                *part.statuses.entry(code).or_default() += 1;
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        windows
            .into_iter()
            .map(|(index, part)| {
                let mut line = format!(
                    "t={:>8.1} ms  requests {:>6}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                    index as f64 * width * 1e3,
                    part.requests(),
                    ms(part.quantile(0.50)),
                    ms(part.quantile(0.99)),
                    ms(part.quantile(1.0)),
                );
                if !part.statuses.is_empty() {
                    line.push_str(&format!("  non-2xx {}", part.statuses_text()));
                }
                line
            })
            .collect()
    }

    /// `503=4 error=1`: responses by status, 0 (a transport error) named `error`.
    fn statuses_text(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| match s {
                0 => format!("error={n}"),
                s => format!("{s}={n}"),
            })
            .collect();
        statuses.join(" ")
    }

    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let rps = self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "requests {} in {:.2} s = {rps:.0} req/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; statuses {}",
            self.requests(),
            self.elapsed.as_secs_f64(),
            ms(self.quantile(0.50)),
            ms(self.quantile(0.90)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            self.statuses_text()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_puts_each_request_in_the_window_it_started_in() {
        let ms = Duration::from_millis;
        let report = Report {
            started: vec![ms(100), ms(1500), ms(200), ms(2999)],
            latencies: vec![ms(1), ms(10), ms(3), ms(7)],
            codes: vec![200, 503, 200, 0],
            ..Report::default()
        };
        let lines = report.timeline(Duration::from_secs(1));
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].starts_with("t=     0.0 ms  requests      2"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("max    3.00 ms"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("t=  1000.0 ms  requests      1"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("p99   10.00 ms"), "{}", lines[1]);
        assert!(lines[1].ends_with("non-2xx 503=1"), "{}", lines[1]);
        assert!(lines[2].ends_with("non-2xx error=1"), "{}", lines[2]);
        assert!(
            lines[2].starts_with("t=  2000.0 ms  requests      1"),
            "{}",
            lines[2]
        );
    }
}
