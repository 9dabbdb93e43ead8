//! Realistic deliveries: shaped like `receive-completed-bolt11.json` (about 1.5 KB), each with its
//! own payment id and `updated_at`, in the environment's organization and environment.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

/// A `receive.completed` body for a new payment.
pub fn receive_completed(
    organization_id: Uuid,
    environment_id: Uuid,
    payment_id: Uuid,
    updated_at: DateTime<Utc>,
) -> Vec<u8> {
    let invoice = "lntbs10n1p4ft36app509h8j7cecenwaktcsrshu6cx4xsczarwfj4nl4tfjq6y7rz79vmqdqqcqzzsxqrrsssp5grs2zd2al99uw93vja4mc5wus9lshcjteuqwef2xkhlp9ppmkens9qxpqysgqmn4s544p8p0263cv83s3c3qjv69z3xxy3fh64ny2y766mfnqfxrrhjj8s7h0lrkxux23dfyzxfydvgjhrsw2p8z0nw54en5a9rvk4kgqxkh73g";
    let amount = json!({"amount": 1000, "currency": "btc", "unit": "msats"});
    let body = json!({
        "type": "receive",
        "detail": {
            "event": "completed",
            "data": {
                "bip21_uri": format!("lightning:{invoice}"),
                "created_at": (updated_at - chrono::Duration::seconds(5)).to_rfc3339(),
                "currency": "btc",
                "data": {
                    "amount": amount, "amount_msats": 1000, "expiration": null, "market_quote": null, "memo": null,
                    "payment_request": invoice,
                    "receipts": [{"data": {"ledger_id": Uuid::new_v4(), "payment_hash": hex::encode(payment_id.as_bytes()).repeat(2),
                        "preimage": hex::encode(Uuid::new_v4().as_bytes()).repeat(2)}, "type": "lightning"}]
                },
                "direction": "receive",
                "environment_id": environment_id,
                "error": null, "exchanges": [], "frozen": [],
                "id": payment_id,
                "organization_id": organization_id,
                "payment_category": "standard",
                "requested_amount": amount,
                "status": "completed",
                "type": "bolt11",
                "updated_at": updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "wallet_id": Uuid::new_v4()
            }
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}
