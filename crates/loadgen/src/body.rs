//! Realistic deliveries: shaped like `receive-completed-bolt11.json` (about 1.5 KB), each with its
//! own payment id and `updated_at`, in the environment's organization and environment.
//!
//! Written with `format!` over a fixed template rather than built as a `serde_json::Value`: the
//! generator shares the machine with the service it measures, and building a tree per request was a
//! fifth of its CPU. Every spliced value is a UUID, hex or an RFC 3339 time, so nothing needs escaping.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

const INVOICE: &str = "lntbs10n1p4ft36app509h8j7cecenwaktcsrshu6cx4xsczarwfj4nl4tfjq6y7rz79vmqdqqcqzzsxqrrsssp5grs2zd2al99uw93vja4mc5wus9lshcjteuqwef2xkhlp9ppmkens9qxpqysgqmn4s544p8p0263cv83s3c3qjv69z3xxy3fh64ny2y766mfnqfxrrhjj8s7h0lrkxux23dfyzxfydvgjhrsw2p8z0nw54en5a9rvk4kgqxkh73g";

/// A `receive.completed` body for a new payment.
pub fn receive_completed(
    organization_id: Uuid,
    environment_id: Uuid,
    payment_id: Uuid,
    updated_at: DateTime<Utc>,
) -> Vec<u8> {
    let amount = r#"{"amount":1000,"currency":"btc","unit":"msats"}"#;
    let created = (updated_at - chrono::Duration::seconds(5)).to_rfc3339();
    let updated = updated_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let payment_hash = hex::encode(payment_id.as_bytes()).repeat(2);
    let preimage = hex::encode(Uuid::new_v4().as_bytes()).repeat(2);
    let ledger_id = Uuid::new_v4();
    let wallet_id = Uuid::new_v4();
    format!(
        concat!(
            r#"{{"detail":{{"data":{{"bip21_uri":"lightning:{invoice}","created_at":"{created}","currency":"btc","#,
            r#""data":{{"amount":{amount},"amount_msats":1000,"expiration":null,"market_quote":null,"memo":null,"#,
            r#""payment_request":"{invoice}","receipts":[{{"data":{{"ledger_id":"{ledger_id}","payment_hash":"{payment_hash}","#,
            r#""preimage":"{preimage}"}},"type":"lightning"}}]}},"direction":"receive","environment_id":"{environment_id}","#,
            r#""error":null,"exchanges":[],"frozen":[],"id":"{payment_id}","organization_id":"{organization_id}","#,
            r#""payment_category":"standard","requested_amount":{amount},"status":"completed","type":"bolt11","#,
            r#""updated_at":"{updated}","wallet_id":"{wallet_id}"}},"event":"completed"}},"type":"receive"}}"#
        ),
        invoice = INVOICE,
        created = created,
        amount = amount,
        ledger_id = ledger_id,
        payment_hash = payment_hash,
        preimage = preimage,
        environment_id = environment_id,
        payment_id = payment_id,
        organization_id = organization_id,
        updated = updated,
        wallet_id = wallet_id,
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_valid_receive_completed_of_about_one_and_a_half_kilobytes() {
        let (org, env, payment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let body = receive_completed(org, env, payment, Utc::now());
        assert!((1300..1800).contains(&body.len()), "{} bytes", body.len());
        let json: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(json["type"], "receive");
        assert_eq!(json["detail"]["event"], "completed");
        let data = &json["detail"]["data"];
        assert_eq!(data["id"], payment.to_string());
        assert_eq!(data["organization_id"], org.to_string());
        assert_eq!(data["environment_id"], env.to_string());
        assert_eq!(data["status"], "completed");
        assert_eq!(data["requested_amount"]["amount"], 1000);
        // That the service parses it as a Voltage payment event: tests/it/loadgen.rs in the service.
    }
}
