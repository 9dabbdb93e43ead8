//! The load generator (`voltage-loadgen`, this crate's binary): signs unique, realistic Voltage deliveries and
//! sends them at a given concurrency or fixed rate for a given time, optionally re-sending a share
//! as duplicates (a retry: same body, new timestamp and signature). It reports requests per second,
//! latency percentiles and counts per status, and can then check that the database holds exactly the
//! distinct events that were acknowledged: not one missing, not one extra.
//!
//! Loopback only in practice: it sends to the URL it is given, bounded in count and time.
//!
//! A tool beside the service rather than part of it: it signs with `voltage-signature`, reads the
//! ids and a secret from the service's configuration file ([`settings`]), and has its own SQL for the
//! database check. The library is what the binary runs; the service's tests drive it in-process.

mod body;
pub mod cli;
mod client;
mod report;
pub mod settings;
pub mod stages;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng as _;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

pub use body::receive_completed;
pub use report::Report;

use client::{Connection, Signed, Target};
use voltage_signature::sign;

/// Bodies a worker keeps for re-sending as duplicates: its most recent ones.
const RECENT_BODIES: usize = 256;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The service's base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub environment: String,
    pub organization_id: Uuid,
    pub environment_id: Uuid,
    pub webhook_id: Uuid,
    pub secret: SecretString,
    pub concurrency: usize,
    pub duration: Duration,
    /// Requests per second in all; `None`: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Share (0 to 1) of requests that re-send an earlier body.
    pub duplicates: f64,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: Report,
    /// Event ids of every 200.
    pub acknowledged: HashSet<Uuid>,
    /// Payment ids of every distinct body sent.
    pub payment_ids: Vec<String>,
}

struct Worker {
    spec: Arc<LoadSpec>,
    target: Target,
    origin: Instant,
    deadline: Instant,
    tokens: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
}

/// Runs the load and gathers what every worker saw.
pub async fn run(spec: LoadSpec) -> anyhow::Result<Outcome> {
    let target = Target::new(&spec.base_url, &spec.environment)?;
    let started = Instant::now();
    let deadline = started + spec.duration;
    let tokens = spec.rate.map(|rate| pace(rate, deadline, spec.concurrency));
    let spec = Arc::new(spec);
    let workers: Vec<_> = (0..spec.concurrency.max(1))
        .map(|_| {
            let worker = Worker {
                spec: spec.clone(),
                target: target.clone(),
                origin: started,
                deadline,
                tokens: tokens.clone(),
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let mut outcome = Outcome::default();
    for worker in workers {
        let part = worker.await?;
        outcome.report.latencies.extend(part.report.latencies);
        outcome.report.started.extend(part.report.started);
        outcome.report.codes.extend(part.report.codes);
        for (status, n) in part.report.statuses {
            *outcome.report.statuses.entry(status).or_default() += n;
        }
        outcome.acknowledged.extend(part.acknowledged);
        outcome.payment_ids.extend(part.payment_ids);
    }
    outcome.report.elapsed = started.elapsed();
    Ok(outcome)
}

/// One token per request, `rate` per second, until the deadline.
fn pace(rate: f64, deadline: Instant, concurrency: usize) -> Arc<Mutex<mpsc::Receiver<()>>> {
    let (send, receive) = mpsc::channel(concurrency.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
        while Instant::now() < deadline {
            tick.tick().await;
            if send.send(()).await.is_err() {
                break;
            }
        }
    });
    Arc::new(Mutex::new(receive))
}

impl Worker {
    async fn run(self) -> Outcome {
        let mut outcome = Outcome::default();
        let mut sent = VecDeque::with_capacity(RECENT_BODIES);
        let mut connection = Connection::new(self.target.clone());
        let webhook_id = http::HeaderValue::from_str(&self.spec.webhook_id.to_string())
            .expect("a UUID is a valid header value");
        while Instant::now() < self.deadline {
            if let Some(tokens) = &self.tokens {
                if tokens.lock().await.recv().await.is_none() {
                    break;
                }
            }
            let body = self.next_body(&mut sent, &mut outcome);
            let started = Instant::now();
            let (status, event_id) = self.send(&mut connection, &webhook_id, body).await;
            outcome.report.latencies.push(started.elapsed());
            outcome.report.started.push(started - self.origin);
            outcome.report.codes.push(status);
            *outcome.report.statuses.entry(status).or_default() += 1;
            outcome.acknowledged.extend(event_id);
        }
        outcome
    }

    /// A new body, or (a `duplicates` share of the time) one of this worker's recent bodies again.
    fn next_body(&self, sent: &mut VecDeque<Bytes>, outcome: &mut Outcome) -> Bytes {
        let mut rng = rand::rng();
        if !sent.is_empty() && rng.random_bool(self.spec.duplicates.clamp(0.0, 1.0)) {
            return sent[rng.random_range(0..sent.len())].clone();
        }
        let payment_id = Uuid::new_v4();
        let body = Bytes::from(receive_completed(
            self.spec.organization_id,
            self.spec.environment_id,
            payment_id,
            chrono::Utc::now(),
        ));
        outcome.payment_ids.push(payment_id.to_string());
        // Only as many as a retry would reach back to: keeping every body made the generator's
        // memory grow by the whole run's bodies, and the page faults cost it a quarter of its CPU.
        if self.spec.duplicates > 0.0 {
            if sent.len() == RECENT_BODIES {
                sent.pop_front();
            }
            sent.push_back(body.clone());
        }
        body
    }

    async fn send(
        &self,
        connection: &mut Connection,
        webhook_id: &http::HeaderValue,
        body: Bytes,
    ) -> (u16, Option<Uuid>) {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signed = Signed {
            signature: sign(self.spec.secret.expose_secret(), &body, &timestamp),
            webhook_id: webhook_id.clone(),
            timestamp,
        };
        let Some((status, answer)) = connection.post(body, &signed).await else {
            return (0, None);
        };
        let event_id = (status == 200)
            .then(|| serde_json::from_slice::<Answer>(&answer).ok())
            .flatten()
            .map(|a| a.event_id);
        (status, event_id)
    }
}

/// The part of the service's 200 the generator reads.
#[derive(serde::Deserialize)]
struct Answer {
    event_id: Uuid,
}

/// What the database holds for a run, against what was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    pub stored: usize,
    /// Acknowledged with 200 but not in the database: must never happen.
    pub missing: usize,
    /// In the database but never acknowledged: possible only when a commit's answer was lost (a
    /// crash or a broken connection after COMMIT); the sender retries and gets `duplicate`.
    pub extra: usize,
}

/// Compares the events stored for the payments of a run with the ones acknowledged.
pub async fn compare(
    pool: &PgPool,
    environment: &str,
    outcome: &Outcome,
) -> anyhow::Result<Comparison> {
    let stored: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM events WHERE environment = $1 AND payment_id = ANY($2)")
            .bind(environment)
            .bind(&outcome.payment_ids)
            .fetch_all(pool)
            .await?;
    let stored: HashSet<Uuid> = stored.into_iter().collect();
    Ok(Comparison {
        stored: stored.len(),
        missing: outcome.acknowledged.difference(&stored).count(),
        extra: stored.difference(&outcome.acknowledged).count(),
    })
}

/// Checks that the database holds exactly the acknowledged events: none missing, none extra.
pub async fn check_database(
    pool: &PgPool,
    environment: &str,
    outcome: &Outcome,
) -> anyhow::Result<String> {
    let c = compare(pool, environment, outcome).await?;
    if c.missing > 0 || c.extra > 0 {
        anyhow::bail!(
            "database check failed: {} acknowledged events missing, {} stored but never acknowledged",
            c.missing,
            c.extra
        );
    }
    Ok(format!(
        "database check: exactly the {} distinct acknowledged events are stored (none missing, none extra)",
        c.stored
    ))
}
