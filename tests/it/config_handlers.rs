//! `[[handlers]]` and `[dispatch]` validation: every mistake names its key.

use voltage_webhooks::config::Config;

const BASE: &str = r#"
[environments.production]
organization_id = "b0684ab8-1130-46af-8f70-71519442f108"
environment_id = "123e4567-e89b-12d3-a456-426614174000"
"#;
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn error_of(handlers: &str) -> String {
    let config = match Config::from_toml(&format!("{BASE}\n{handlers}")) {
        Ok(config) => config,
        Err(e) => return format!("{:#}", anyhow::Error::from(e)),
    };
    let e = config
        .handler_specs()
        .map(|_| ())
        .expect_err("should be refused");
    format!("{:#}", anyhow::Error::from(e))
}

fn specs(handlers: &str) -> usize {
    Config::from_toml(&format!("{BASE}\n{handlers}"))
        .unwrap()
        .handler_specs()
        .unwrap()
        .len()
}

#[test]
fn valid_handlers_of_every_kind_are_accepted() {
    let toml = format!(
        "[[handlers]]\nname = \"ledger\"\nkind = \"http\"\nurl = \"https://ledger.internal/hook\"\nsecret = {{ value = \"{WHSEC}\" }}\n\
         events = [\"receive.completed\", \"send.*\"]\nenvironments = [\"production\"]\n\
         [[handlers]]\nname = \"bus\"\nkind = \"nats\"\nstream = \"VOLTAGE\"\ncreate_stream = true\n\
         [[handlers]]\nname = \"audit\"\nkind = \"log\"\n"
    );
    assert_eq!(specs(&toml), 3);
}

#[test]
fn each_handler_mistake_is_named() {
    let http = |extra: &str| format!("[[handlers]]\nname = \"h\"\nkind = \"http\"\n{extra}\n");
    let cases = [
        (http(&format!("secret = {{ value = \"{WHSEC}\" }}")), "handlers[0].url"),
        (http("url = \"https://x/\""), "handlers[0].secret"),
        (http("url = \"ftp://x/\"\nsecret = { value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }"), "handlers[0].url"),
        (http("url = \"https://x/\"\nsecret = { value = \"plainpassword\" }"), "handlers[0].secret"),
        (http(&format!("url = \"https://x/\"\nsecret = {{ value = \"{WHSEC}\" }}\nstream = \"S\"")), "handlers[0].stream"),
        ("[[handlers]]\nname = \"l\"\nkind = \"log\"\nurl = \"https://x/\"\n".into(), "handlers[0].url"),
        ("[[handlers]]\nname = \"l\"\nkind = \"log\"\nevents = [\"send\"]\n".into(), "handlers[0].events"),
        ("[[handlers]]\nname = \"l\"\nkind = \"log\"\nenvironments = [\"prod\"]\n".into(), "handlers[0].environments"),
        ("[[handlers]]\nname = \"l\"\nkind = \"log\"\ntimeout_ms = 60000\n".into(), "handlers[0].timeout_ms"),
        ("[[handlers]]\nname = \"l\"\nkind = \"log\"\nbackoff_base_ms = 10\nbackoff_cap_ms = 5\n".into(), "handlers[0].backoff_cap_ms"),
        ("[[handlers]]\nname = \"l\"\nkind = \"log\"\nmax_attempts = 0\n".into(), "handlers[0].max_attempts"),
        ("[[handlers]]\nname = \"Bad Name\"\nkind = \"log\"\n".into(), "handlers[0].name"),
        ("[[handlers]]\nname = \"n\"\nkind = \"nats\"\ncreate_stream = true\n".into(), "handlers[0].stream"),
        ("[[handlers]]\nname = \"n\"\nkind = \"nats\"\nsubject_prefix = \"a.>\"\n".into(), "handlers[0].subject_prefix"),
        ("[[handlers]]\nname = \"a\"\nkind = \"log\"\n[[handlers]]\nname = \"a\"\nkind = \"log\"\n".into(), "handlers[1].name"),
        ("[[handlers]]\nname = \"a\"\nkind = \"smtp\"\n".into(), "smtp"),
        ("[[handlers]]\nname = \"a\"\nkind = \"log\"\ncolour = \"red\"\n".into(), "colour"),
    ];
    for (toml, key) in cases {
        let e = error_of(&toml);
        assert!(e.contains(key), "expected {key:?} in: {e}\nfor:\n{toml}");
    }
}

#[test]
fn dispatch_settings_must_be_positive() {
    let e = error_of("[dispatch]\nenabled = true\nbatch_size = 0\nlease_secs = 60\npoll_interval_ms = 500\nmax_in_flight = 8\n");
    assert!(e.contains("dispatch.batch_size"), "{e}");
}

#[test]
fn confirmation_needs_an_api_key_in_every_environment_it_covers() {
    let handler = "[[handlers]]\nname = \"ledger\"\nkind = \"log\"\nconfirm = true\n";
    let e = error_of(handler);
    assert!(
        e.contains("handlers[0].confirm") && e.contains("environments.production.voltage_api_key"),
        "{e}"
    );
    let with_key = BASE.replace(
        "environment_id = \"123e4567-e89b-12d3-a456-426614174000\"",
        "environment_id = \"123e4567-e89b-12d3-a456-426614174000\"\nvoltage_api_key = { value = \"vltg_api_key\" }",
    );
    let config = Config::from_toml(&format!("{with_key}\n{handler}")).unwrap();
    assert!(config.handler_specs().unwrap()[0].confirm);
    assert_eq!(config.reconcile_targets().unwrap().len(), 1);
}

#[test]
fn reconciliation_and_retention_mistakes_are_named() {
    for (toml, key) in [
        (
            "[reconcile]\nbase_url = \"ftp://voltage\"\n",
            "reconcile.base_url",
        ),
        ("[reconcile]\npage_size = 0\n", "reconcile.page_size"),
        (
            "[reconcile]\nbackoff_cap_ms = 1\n",
            "reconcile.backoff_cap_ms",
        ),
        ("[retention]\nbatch_size = 0\n", "retention.batch_size"),
        ("[retention]\nevents_days = 0\n", "retention.events_days"),
    ] {
        let config = Config::from_toml(&format!("{toml}{BASE}")).unwrap();
        let e = match (
            config.voltage_api(),
            config.reconcile_settings(),
            config.resolve(),
        ) {
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => e.to_string(),
            _ => panic!("{toml} should be refused"),
        };
        assert!(e.contains(key), "{toml}: {e}");
    }
    let config = Config::from_toml(&format!("[retention]\nevents_days = 7\n{BASE}")).unwrap();
    let (_, warnings) = config.resolve().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("retention.events_days = 7")),
        "{warnings:?}"
    );
}

#[test]
fn the_payments_api_is_reached_over_https_unless_plain_http_is_allowed_explicitly() {
    let plain = "[reconcile]\nbase_url = \"http://voltage.example/v1\"\n";
    let config = Config::from_toml(&format!("{plain}{BASE}")).unwrap();
    let e = config
        .voltage_api()
        .expect_err("http:// refused")
        .to_string();
    assert!(
        e.contains("reconcile.base_url") && e.contains("https"),
        "{e}"
    );
    let allowed = format!("{plain}allow_plain_http = true\n{BASE}");
    assert!(Config::from_toml(&allowed).unwrap().voltage_api().is_ok());
    let default = Config::from_toml(BASE).unwrap();
    assert!(default.voltage_api().is_ok(), "the default URL is https");
}
