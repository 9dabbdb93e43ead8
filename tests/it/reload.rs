//! SIGHUP reloads secrets without a restart: a newly added secret is accepted, a removed one
//! refused, and a broken configuration changes nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::{database_url, free_port};
use crate::common::*;
use sqlx::postgres::PgConnectOptions;

const A: &str = "vltg_TESTONLYreloadSecretA0000000000";
const B: &str = "vltg_TESTONLYreloadSecretB0000000000";

fn write_config(path: &std::path::Path, port: u16, secrets: &str) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[dispatch]\nenabled = false\n\
         [environments.production]\norganization_id = \"123e4567-e89b-12d3-a456-426614174000\"\n\
         environment_id = \"123e4567-e89b-12d3-a456-426614174000\"\n\
         [[environments.production.webhooks]]\nid = \"{PRODUCTION_WEBHOOK}\"\nsecrets = [{secrets}]\n"
    );
    std::fs::write(path, text).unwrap();
}

async fn status_with(client: &reqwest::Client, port: u16, secret: &str, tag: &str) -> u16 {
    let body = format!(r#"{{"type":"test","detail":{{"event":"created","data":"{tag}"}}}}"#);
    let ts = now().to_string();
    client
        .post(format!("http://127.0.0.1:{port}/webhooks/production"))
        .header("content-type", "application/json")
        .header("x-voltage-webhook-id", PRODUCTION_WEBHOOK)
        .header("x-voltage-timestamp", &ts)
        .header(
            "x-voltage-signature",
            voltage_webhooks::verify::sign(secret, body.as_bytes(), &ts),
        )
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn eventually(client: &reqwest::Client, port: u16, secret: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    loop {
        n += 1;
        if status_with(client, port, secret, &format!("probe-{secret}-{n}")).await == want {
            return;
        }
        assert!(Instant::now() < deadline, "never got {want} with {secret}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hangup(pid: u32) {
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[sqlx::test]
async fn sighup_swaps_in_new_secrets_and_drops_removed_ones_without_a_restart(
    _options: sqlx::postgres::PgPoolOptions,
    connect: PgConnectOptions,
) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    write_config(&path, port, &format!("{{ value = \"{A}\" }}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"))
        .arg("--config")
        .arg(&path)
        .args(["serve", "--no-migrate"])
        .env("DATABASE_URL", database_url(&connect))
        .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    eventually(&client, port, A, 200).await;
    assert_eq!(status_with(&client, port, B, "before").await, 401);

    // Rotation step: new secret first, old kept.
    write_config(
        &path,
        port,
        &format!("{{ value = \"{B}\" }}, {{ value = \"{A}\" }}"),
    );
    hangup(child.id());
    eventually(&client, port, B, 200).await;
    assert_eq!(status_with(&client, port, A, "both").await, 200);

    // Rotation over: the old secret is removed.
    write_config(&path, port, &format!("{{ value = \"{B}\" }}"));
    hangup(child.id());
    eventually(&client, port, A, 401).await;
    assert_eq!(status_with(&client, port, B, "after").await, 200);

    // A broken file is refused and the running secrets stay.
    std::fs::write(&path, "[server\nbroken").unwrap();
    hangup(child.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_with(&client, port, B, "still").await, 200);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process must survive a bad reload"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[sqlx::test]
async fn a_failed_reload_logs_one_readable_line_naming_the_key(
    _options: sqlx::postgres::PgPoolOptions,
    connect: PgConnectOptions,
) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let log_path = dir.path().join("stderr.log");
    write_config(&path, port, &format!("{{ value = \"{A}\" }}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"))
        .arg("--config")
        .arg(&path)
        .args(["serve", "--no-migrate"])
        .env("DATABASE_URL", database_url(&connect))
        .env("NO_COLOR", "1")
        .env_remove("VOLTAGE_WEBHOOKS_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    eventually(&client, port, A, 200).await;

    // A second registration whose id is not a UUID.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[[environments.production.webhooks]]\nid = \"not-a-uuid\"\nsecrets = []\n");
    std::fs::write(&path, text).unwrap();
    hangup(child.id());
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("reload failed")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no reload failure logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.contains("environments.production.webhooks[1].id"),
        "{line}"
    );
    for internal in ["Tag(", "default.environments", "profile:", "cause="] {
        assert!(!line.contains(internal), "{internal} in {line}");
    }
}
