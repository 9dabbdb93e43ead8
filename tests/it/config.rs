//! Configuration: layering, secret sources, and start-up failures that name the offending key.

use std::io::Write as _;

use voltage_webhooks::config::Config;

const ENV: &str = r#"
[environments.production]
organization_id = "b0684ab8-1130-46af-8f70-71519442f108"
environment_id = "123e4567-e89b-12d3-a456-426614174000"
"#;

fn with_webhooks(webhooks: &str) -> String {
    format!("{ENV}\n{webhooks}")
}

/// The whole error chain, as the CLI prints it.
fn error_of(toml: &str) -> String {
    let config = match Config::from_toml(toml) {
        Ok(config) => config,
        Err(e) => return format!("{:#}", anyhow::Error::from(e)),
    };
    let e = config
        .resolve()
        .map(|_| ())
        .expect_err("config should be refused");
    format!("{:#}", anyhow::Error::from(e))
}

#[test]
fn defaults_apply_when_nothing_is_configured() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.server.max_body_bytes, 65_536);
    assert_eq!(config.server.timestamp_tolerance_secs, 300);
    assert_eq!(config.database.max_connections, 16);
    assert_eq!(config.database.acquire_timeout_ms, 2000);
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let e = error_of("[server]\nlisten = \"127.0.0.1:1\"\nmax_body_byte = 10\n");
    assert!(e.contains("max_body_byte"), "{e}");
    let e = error_of(&with_webhooks(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ envv = \"X\" }]",
    ));
    assert!(e.contains("envv"), "{e}");
}

#[test]
fn an_unset_environment_variable_is_named_with_its_key() {
    let e = error_of(&with_webhooks(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ env = \"VW_TEST_SURELY_UNSET_VARIABLE\" }]",
    ));
    assert!(
        e.contains("environments.production.webhooks[0].secrets[0]"),
        "{e}"
    );
    assert!(e.contains("VW_TEST_SURELY_UNSET_VARIABLE"), "{e}");
}

#[test]
fn an_unreadable_file_is_named() {
    let e = error_of(&with_webhooks(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ file = \"/nonexistent/secret\" }]",
    ));
    assert!(
        e.contains("secrets[0]") && e.contains("/nonexistent/secret"),
        "{e}"
    );
}

#[test]
fn a_secret_file_is_trimmed_and_used() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "  vltg_TESTONLYfromAFile000000000000000  ").unwrap();
    let toml = with_webhooks(&format!(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{{ file = \"{}\" }}]",
        file.path().display()
    ));
    let (registry, _) = Config::from_toml(&toml).unwrap().resolve().unwrap();
    let registration = registry
        .registration("6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10")
        .unwrap();
    let secret = secrecy::ExposeSecret::expose_secret(&registration.secrets[0]).to_owned();
    assert_eq!(secret, "vltg_TESTONLYfromAFile000000000000000");
}

#[test]
fn an_empty_secret_is_refused() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "   ").unwrap();
    for source in [
        format!("{{ file = \"{}\" }}", file.path().display()),
        "{ value = \"\" }".into(),
    ] {
        let e = error_of(&with_webhooks(&format!(
            "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{source}]"
        )));
        assert!(e.contains("secrets[0]") && e.contains("empty"), "{e}");
    }
}

#[test]
fn a_secret_reference_must_name_exactly_one_source() {
    let e = error_of(&with_webhooks(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ env = \"A\", value = \"vltg_x\" }]",
    ));
    assert!(e.contains("exactly one"), "{e}");
}

#[test]
fn one_webhook_id_in_two_environments_is_refused() {
    let toml = format!(
        "{ENV}\n[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{{ value = \"vltg_a\" }}]\n\
         [environments.staging]\norganization_id = \"b0684ab8-1130-46af-8f70-71519442f108\"\nenvironment_id = \"5f0e9a4c-1111-4b2a-9c3d-000000000002\"\n\
         [[environments.staging.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{{ value = \"vltg_b\" }}]\n"
    );
    let e = error_of(&toml);
    assert!(e.contains("environments.staging.webhooks[0].id"), "{e}");
    assert!(e.contains("environments.production.webhooks[0]"), "{e}");
}

#[test]
fn a_duplicated_secret_is_refused_without_showing_it() {
    let e = error_of(&with_webhooks(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ value = \"vltg_sameSecret\" }]\n\
         [[environments.production.webhooks]]\nid = \"0b8a4f7e-2f7c-4a36-9d1e-4c3b2a190001\"\nsecrets = [{ value = \"vltg_sameSecret\" }]",
    ));
    assert!(
        e.contains("webhooks[1].secrets[0]") && e.contains("webhooks[0].secrets[0]"),
        "{e}"
    );
    assert!(
        !e.contains("vltg_sameSecret"),
        "the secret leaked into the error: {e}"
    );
}

#[test]
fn environment_names_outside_the_safe_alphabet_are_refused() {
    let e = error_of(&ENV.replace("production", "Prod.1"));
    assert!(e.contains("environments"), "{e}");
}

#[test]
fn questionable_but_valid_settings_produce_warnings() {
    let toml = format!(
        "[dispatch]\nmax_in_flight = 20\n[[handlers]]\nname = \"a\"\nkind = \"log\"\n[[handlers]]\nname = \"b\"\nkind = \"log\"\n\
         {}\n[environments.staging]\norganization_id = \"b0684ab8-1130-46af-8f70-71519442f108\"\nenvironment_id = \"5f0e9a4c-1111-4b2a-9c3d-000000000002\"\n",
        with_webhooks(
            "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ value = \"vltg_1\" }, { value = \"vltg_2\" }, { value = \"vltg_3\" }]"
        )
    );
    let (_, warnings) = Config::from_toml(&toml).unwrap().resolve().unwrap();
    let all = warnings.join("\n");
    assert!(all.contains("inline value"), "{all}");
    assert!(all.contains("3 secrets"), "{all}");
    assert!(
        all.contains("environments.staging has no webhook registrations"),
        "{all}"
    );
    assert!(
        all.contains("dispatch.max_in_flight (20) is below the handlers' total concurrency (32)"),
        "{all}"
    );
}

#[test]
fn the_debug_output_of_a_resolved_config_shows_no_secret() {
    let toml = with_webhooks(
        "[[environments.production.webhooks]]\nid = \"6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10\"\nsecrets = [{ value = \"vltg_TESTONLYneverPrintMe0000000000\" }]",
    );
    let config = Config::from_toml(&format!(
        "[database]\nurl = \"postgres://u:dbpassword@h/db\"\n{toml}"
    ))
    .unwrap();
    let (registry, _) = config.resolve().unwrap();
    let printed = format!("{config:?} {registry:?}");
    assert!(!printed.contains("neverPrintMe"), "{printed}");
    assert!(!printed.contains("dbpassword"), "{printed}");
}

#[test]
fn the_example_config_parses_with_its_secrets_set() {
    // SAFETY of the test: these variable names are used by no other test in this binary.
    std::env::set_var(
        "VOLTAGE_STAGING_WEBHOOK_SECRET",
        "vltg_TESTONLYexampleStaging000000000",
    );
    std::env::set_var(
        "VOLTAGE_PRODUCTION_WEBHOOK_SECRET",
        "vltg_TESTONLYexampleProduction000000",
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let config = Config::load(Some(std::path::Path::new(path))).unwrap();
    let (registry, warnings) = config.resolve().unwrap();
    assert_eq!(registry.environments().count(), 2);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn a_configuration_error_is_one_line_naming_the_key_as_written() {
    use crate::common::{config_toml, PRODUCTION_SECOND_WEBHOOK, STAGING_WEBHOOK};
    let toml = config_toml().replacen(
        &format!("id = \"{PRODUCTION_SECOND_WEBHOOK}\""),
        "id = \"not-a-uuid\"",
        1,
    );
    let error = Config::from_toml(&toml)
        .expect_err("not a UUID")
        .to_string();
    assert!(
        error.starts_with("configuration key `environments.production.webhooks[1].id`: "),
        "{error}"
    );
    assert!(error.contains("UUID"), "what is wrong: {error}");
    assert!(!error.contains('\n'), "{error}");
    for internal in ["default.", "Tag(", "profile", ".1."] {
        assert!(!error.contains(internal), "{internal} in {error}");
    }
    let missing =
        Config::from_toml(&config_toml().replacen(&format!("id = \"{STAGING_WEBHOOK}\"\n"), "", 1))
            .expect_err("no id")
            .to_string();
    assert!(
        missing.starts_with("configuration key `environments.staging.webhooks[0].id`: missing"),
        "{missing}"
    );
}
