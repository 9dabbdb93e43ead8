//! What the webhooks told us about payments, in the shape the reconciler compares with the API.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// The newest state stored for a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownState {
    pub status: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Store {
    /// The newest stored state of each of `payment_ids` in `environment` (absent: never seen).
    pub async fn latest_payment_states(
        &self,
        environment: &str,
        payment_ids: &[String],
    ) -> Result<HashMap<String, KnownState>, StoreError> {
        // `payment_id = ANY($2)` leaves only rows that have one: not null.
        let rows = sqlx::query!(
            r#"SELECT DISTINCT ON (payment_id) payment_id AS "payment_id!", payment_status,
                    payment_updated_at
             FROM events WHERE environment = $1 AND payment_id = ANY($2)
             ORDER BY payment_id, payment_updated_at DESC NULLS LAST"#,
            environment,
            payment_ids
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let state = KnownState {
                    status: r.payment_status,
                    updated_at: r.payment_updated_at,
                };
                (r.payment_id, state)
            })
            .collect())
    }
}
