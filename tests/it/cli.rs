//! The binary as an operator uses it: `sign`, `check-config`, and `serve` end to end.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voltage_webhooks::verify::SignatureCheck;

const SECRET: &str = "vltg_TESTONLYcliSecret00000000000000";
const WEBHOOK: &str = "6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10";
const BODY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/voltage/receive-generated-bolt11.json"
);

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_voltage-webhooks"));
    command.env_remove("VOLTAGE_WEBHOOKS_CONFIG");
    command
}

fn sign_headers() -> Vec<(String, String)> {
    let output = bin()
        .args([
            "sign",
            "--secret-env",
            "VW_CLI_SECRET",
            "--body",
            BODY,
            "--webhook-id",
            WEBHOOK,
        ])
        .env("VW_CLI_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains(SECRET));
    stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn sign_prints_headers_whose_signature_verifies() {
    let headers = sign_headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let body = std::fs::read(BODY).unwrap();
    let secrets = [secrecy::SecretString::from(SECRET)];
    let (timestamp, signature) = (get("x-voltage-timestamp"), get("x-voltage-signature"));
    let check = SignatureCheck::new(&body, &timestamp, &signature);
    assert_eq!(check.matching_index(&secrets), Some(0));
    assert_eq!(get("x-voltage-event"), "generated");
    assert_eq!(get("x-voltage-webhook-id"), WEBHOOK);
}

#[test]
fn check_config_fails_naming_the_offending_key() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[server]\nlisten = \"127.0.0.1:1\"\ntimestamp_tolerance = 5"
    )
    .unwrap();
    let output = bin()
        .arg("--config")
        .arg(file.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timestamp_tolerance"), "{stderr}");
}

/// Kills the child if the test fails before it stops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[tokio::test]
async fn serve_stores_a_signed_delivery_and_a_separate_dispatch_process_delivers_it() {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL for the tests");
    let (server, _) = base.rsplit_once('/').unwrap();
    let database = format!("vw_cli_{}", uuid::Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [environments.staging]\norganization_id = \"b0684ab8-1130-46af-8f70-71519442f108\"\n\
         environment_id = \"123e4567-e89b-12d3-a456-426614174000\"\n\
         [[environments.staging.webhooks]]\nid = \"{WEBHOOK}\"\nsecrets = [{{ env = \"VW_CLI_SECRET\" }}]\n\
         [dispatch]\nenabled = false\npoll_interval_ms = 50\n\
         [[handlers]]\nname = \"audit\"\nkind = \"log\"\n"
    )
    .unwrap();
    let child = bin()
        .arg("--config")
        .arg(config.path())
        .arg("serve")
        .env("DATABASE_URL", format!("{server}/{database}"))
        .env("VW_CLI_SECRET", SECRET)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");

    wait_until_ready(&client, &url).await;
    let health = bin()
        .args(["healthcheck", "--url", &format!("{url}/healthz")])
        .status()
        .unwrap();
    assert!(
        health.success(),
        "the container HEALTHCHECK command fails against a healthy service"
    );
    let mut request = client
        .post(format!("{url}/webhooks/staging"))
        .body(std::fs::read(BODY).unwrap());
    for (name, value) in sign_headers() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["status"], "stored");

    let db = sqlx::PgPool::connect(&format!("{server}/{database}"))
        .await
        .unwrap();
    let status_sql = "SELECT string_agg(status, ',') FROM deliveries";
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status: Option<String> = sqlx::query_scalar(status_sql).fetch_one(&db).await.unwrap();
    assert_eq!(
        status.as_deref(),
        Some("pending"),
        "serve must not dispatch with dispatch.enabled = false"
    );

    let dispatcher = bin()
        .arg("--config")
        .arg(config.path())
        .arg("dispatch")
        .env("DATABASE_URL", format!("{server}/{database}"))
        .env("VW_CLI_SECRET", SECRET)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut dispatching = Running(dispatcher);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Option<String> = sqlx::query_scalar(status_sql).fetch_one(&db).await.unwrap();
        if status.as_deref() == Some("succeeded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dispatch process did not deliver: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.close().await;

    stop_with_sigterm(&mut running).await;
    stop_with_sigterm(&mut dispatching).await;
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

async fn stop_with_sigterm(process: &mut Running) {
    let pid = process.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "process did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
}

async fn wait_until_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{url}/readyz")).send().await {
            if response.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn api_keys_are_printed_once_listed_without_secrets_rotated_and_revoked() {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL for the tests");
    let (server, _) = base.rsplit_once('/').unwrap();
    let database = format!("vw_cli_keys_{}", uuid::Uuid::new_v4().simple());
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        "[environments.production]\norganization_id = \"b0684ab8-1130-46af-8f70-71519442f108\"\n\
         environment_id = \"123e4567-e89b-12d3-a456-426614174000\"\n"
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = bin()
            .arg("--config")
            .arg(config.path())
            .args(["api-key"])
            .args(args)
            .env("DATABASE_URL", format!("{server}/{database}"))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let create = [
        "create",
        "--name",
        "ledger-production-read",
        "--environment",
        "production",
        "--permission",
        "read",
    ];
    let (ok, out, err) = run(&[
        &create[..],
        &["--allow-ip", "10.0.0.0/8", "--expires-in", "90d"],
    ]
    .concat());
    assert!(ok, "{err}");
    let key = out.lines().next().unwrap().to_owned();
    assert!(key.starts_with("vwk_") && key.len() == 47, "{out}");

    let (ok, listing, _) = run(&["list"]);
    assert!(ok);
    assert!(
        listing.contains("ledger-production-read")
            && listing.contains("10.0.0.0/8")
            && listing.contains("active")
    );
    assert!(!listing.contains(&key[8..]), "list shows a key");

    let (ok, _, err) = run(&create);
    assert!(
        !ok && err.contains("exists"),
        "a second current key of one name: {err}"
    );
    let (ok, _, err) = run(&[
        "create",
        "--name",
        "x",
        "--environment",
        "staging",
        "--permission",
        "read",
    ]);
    assert!(!ok && err.contains("--environment"), "{err}");

    let (ok, rotated, _) = run(&["rotate", "ledger-production-read", "--grace", "1h"]);
    assert!(ok);
    let new_key = rotated.lines().next().unwrap();
    assert!(new_key.starts_with("vwk_") && new_key != key);
    let (_, listing, _) = run(&["list"]);
    assert!(
        listing.contains("in-grace") && listing.contains("active"),
        "{listing}"
    );

    let (ok, revoked, _) = run(&["revoke", "ledger-production-read"]);
    assert!(ok && revoked.contains("revoked 2"), "{revoked}");

    let drop = format!("DROP DATABASE {database} WITH (FORCE)");
    let status = Command::new("psql")
        .args([base.as_str(), "-qc", &drop])
        .status()
        .unwrap();
    assert!(status.success());
}
