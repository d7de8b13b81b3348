//! Live reload through the real binary: SIGHUP (and a watched file's change) swaps the
//! config under load without dropping a request, an invalid config is refused in one log
//! line, a subject added to the file's deny list is refused and its cached credential
//! dropped, and renaming an issuer or a rule never lifts a stored deny entry.

use std::time::Duration;

use serde_json::Value;

use crate::deny::{self, admin_token};
use crate::helpers::{
    Fault, Load, Service, ServiceProcess, TestApp, assert_problem, audit_rows_in, request_id,
    wait_for,
};

/// How long a reload may take to show, on a loaded machine.
const RELOAD_SHOWS: Duration = Duration::from_secs(20);

/// The rule's name as whoami reports it for the default caller.
async fn matched_rule(service: &ServiceProcess, token: &str) -> Value {
    service.whoami(token).await["rule"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_with_a_valid_config_changes_the_rule_under_load_without_dropping_a_request() {
    let mut service = TestApp::builder().spawn_process().await;
    let token = service.issuer.token().sign();
    assert_eq!(matched_rule(&service, &token).await, "acme-main");
    let renamed = service
        .config_text
        .replace(r#"name = "acme-main""#, r#"name = "acme-renamed""#);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let load = Load::start(&service.address, &token, vec![http; 6]);
    load.flowing(30, RELOAD_SHOWS)
        .await
        .expect("requests flow before the reload");

    service.write_config(&renamed);
    service.hangup();
    let switched = wait_for(RELOAD_SHOWS, async || {
        (matched_rule(&service, &token).await == "acme-renamed").then_some(())
    })
    .await;
    let after = load.ok() + 40;
    load.flowing(after, RELOAD_SHOWS)
        .await
        .expect("requests flow after the reload");
    // More signals, with the same config: none of them may end the process.
    service.hangup();
    service.hangup();
    load.flowing(after + 10, RELOAD_SHOWS)
        .await
        .expect("requests flow after more signals");
    let answers = load.stop().await;

    eprintln!(
        "{} requests answered 200 across three SIGHUPs, {} otherwise",
        answers.ok,
        answers.other.len()
    );
    assert!(
        switched.is_some(),
        "the new rule never matched:\n{}",
        service.log()
    );
    assert!(
        answers.other.is_empty(),
        "requests failed across the reload: {:?}",
        answers.other
    );
    assert!(service.is_running(), "SIGHUP ended the service");
    let rules: std::collections::BTreeSet<String> = audit_rows_in(&service.database_url)
        .await
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .filter_map(|r| r["rule"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        rules.into_iter().collect::<Vec<_>>(),
        ["acme-main", "acme-renamed"],
        "tokens were issued under both rules"
    );
}

#[tokio::test]
async fn sighup_with_an_invalid_config_keeps_the_old_one_and_logs_one_line() {
    let mut service = TestApp::builder().spawn_process().await;
    let token = service.issuer.token().sign();
    // Invalid twice over, and with a password that must not reach the log.
    let broken = service
        .config_text
        .replace(r#"name = "acme-main""#, r#"name = "acme-renamed""#)
        .replace(
            r#"issuer = "test"
claims"#,
            r#"issuer = "nobody"
claims"#,
        )
        .replace("postgres://", "postgres://broker:hunter2-not-logged@");
    assert_ne!(broken, service.config_text);

    service.write_config(&broken);
    service.hangup();
    let refused = wait_for(RELOAD_SHOWS, async || {
        let log = service.log();
        log.contains("config reload refused").then_some(log)
    })
    .await
    .unwrap_or_else(|| panic!("no refusal was logged:\n{}", service.log()));

    let lines: Vec<&str> = refused
        .lines()
        .filter(|l| l.contains("config reload refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{refused}");
    assert!(
        lines[0].contains("rules[0].issuer"),
        "names the problem: {}",
        lines[0]
    );
    assert!(
        !refused.contains("hunter2"),
        "a secret reached the log: {refused}"
    );
    assert!(service.is_running(), "SIGHUP ended the service");
    assert_eq!(
        matched_rule(&service, &token).await,
        "acme-main",
        "the old config serves"
    );
    assert_eq!(service.issue(&token).await.status(), 200);
}

#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal_when_watched() {
    let service = TestApp::builder()
        .extra_config("[reload]\nwatch_interval_secs = 1\n")
        .spawn_process()
        .await;
    let token = service.issuer.token().sign();

    service.write_config(
        &service
            .config_text
            .replace(r#"name = "acme-main""#, r#"name = "acme-watched""#),
    );

    let switched = wait_for(RELOAD_SHOWS, async || {
        (matched_rule(&service, &token).await == "acme-watched").then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "the changed file was not applied:\n{}",
        service.log()
    );
}

#[tokio::test]
async fn a_subject_denied_in_the_file_is_refused_after_sighup_and_its_cached_credential_dropped() {
    // Moto's tokens expired in 2015; the proxy gives them a life worth caching.
    let mut service = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn_process()
        .await;
    let token = service.issuer.token().sign();
    let first = service.issue(&token).await;
    assert_eq!(first.status(), 200);
    let cached = service.issue(&token).await;
    assert_eq!(cached.status(), 200);
    let cached_id = request_id(&cached);
    let row = |rows: &[Value], id: &str| {
        rows.iter()
            .find(|r| r["request_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no audit row for {id}"))
    };
    let rows = audit_rows_in(&service.database_url).await;
    assert_eq!(
        row(&rows, &cached_id)["from_cache"],
        true,
        "the second one is cached"
    );
    let deny =
        "\n[[deny]]\nissuer = \"test\"\nsubject = \"repo:acme/api:*\"\nreason = \"leaked token\"\n";

    service.write_config(&format!("{}{deny}", service.config_text));
    service.hangup();
    let denied = wait_for(RELOAD_SHOWS, async || {
        let response = service.issue(&token).await;
        (response.status() == 403).then_some(response)
    })
    .await
    .unwrap_or_else(|| panic!("the subject was never denied:\n{}", service.log()));

    let denied_id = request_id(&denied);
    let body = assert_problem(denied, 403, "forbidden").await;
    assert!(
        !body["detail"].as_str().unwrap().contains("leaked"),
        "the reason is the operators': {body}"
    );
    let rows = audit_rows_in(&service.database_url).await;
    let refusal = row(&rows, &denied_id);
    assert_eq!(refusal["reason"], "denied_by_policy");
    assert_eq!(refusal["outcome"], "denied");
    assert_eq!(refusal["subject"], "repo:acme/api:ref:refs/heads/main");
    let whoami = service.whoami(&token).await;
    assert_eq!(whoami["denied"], true, "{whoami}");
    assert!(whoami["allowed"].is_null(), "{whoami}");

    // Lifted again, the caller gets a credential fetched anew: the cached one was dropped.
    service.write_config(&service.config_text);
    service.hangup();
    let lifted = wait_for(RELOAD_SHOWS, async || {
        let response = service.issue(&token).await;
        (response.status() == 200).then_some(response)
    })
    .await
    .expect("the deny entry was lifted");
    let rows = audit_rows_in(&service.database_url).await;
    assert_eq!(
        row(&rows, &request_id(&lifted))["from_cache"],
        false,
        "the credential cached before the denial was served again"
    );
    assert!(service.is_running());
}

#[tokio::test]
async fn a_reload_keeps_unchanged_issuers_keys_and_no_credential_outlives_its_rules_shape() {
    let service = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn_process()
        .await;
    let token = service.issuer.token().sign();
    assert_eq!(service.issue(&token).await.status(), 200);
    let fetches = service.issuer.jwks_fetches();
    // The same rule name, a different shape: a shorter session.
    let reshaped = service.config_text.replace(
        "session_duration_secs = 1800",
        "session_duration_secs = 1700",
    );
    assert_ne!(reshaped, service.config_text);

    service.write_config(&reshaped);
    service.hangup();
    let answer = wait_for(RELOAD_SHOWS, async || {
        let whoami = service.whoami(&token).await;
        (whoami["allowed"]["maxDurationSeconds"] == 1700).then_some(())
    })
    .await;

    assert!(
        answer.is_some(),
        "the reshaped rule never applied:\n{}",
        service.log()
    );
    let response = service.issue(&token).await;
    assert_eq!(response.status(), 200);
    let rows = audit_rows_in(&service.database_url).await;
    let row = rows
        .iter()
        .find(|r| r["request_id"] == request_id(&response))
        .unwrap();
    assert_eq!(
        row["from_cache"], false,
        "a credential of the old shape was served"
    );
    assert_eq!(
        service.issuer.jwks_fetches(),
        fetches,
        "an unchanged issuer refetched its keys"
    );

    // A changed issuer is built afresh, and fetches its keys.
    service.write_config(&reshaped.replace(
        "jwks_min_refresh_interval_secs = 1",
        "jwks_min_refresh_interval_secs = 2",
    ));
    service.hangup();
    let refetched = wait_for(RELOAD_SHOWS, async || {
        (service.issuer.jwks_fetches() > fetches).then_some(())
    })
    .await;
    assert!(refetched.is_some(), "a changed issuer kept its old keys");
    assert_eq!(service.issue(&token).await.status(), 200);
}

#[tokio::test]
async fn a_reload_applies_what_it_can_and_names_the_settings_that_take_a_restart() {
    let service = TestApp::builder().spawn_process().await;
    let token = service.issuer.token().sign();
    let changed = service
        .config_text
        .replace(r#"name = "acme-main""#, r#"name = "acme-renamed""#)
        .replace("max_body_bytes = 4096", "max_body_bytes = 8192");

    service.write_config(&changed);
    service.hangup();
    let switched = wait_for(RELOAD_SHOWS, async || {
        (matched_rule(&service, &token).await == "acme-renamed").then_some(())
    })
    .await;

    assert!(
        switched.is_some(),
        "the rule change was not applied:\n{}",
        service.log()
    );
    let log = wait_for(RELOAD_SHOWS, async || {
        let log = service.log();
        log.contains("were not applied").then_some(log)
    })
    .await
    .unwrap_or_else(|| panic!("nothing said what was not applied:\n{}", service.log()));
    let line = log
        .lines()
        .find(|l| l.contains("were not applied"))
        .unwrap();
    let not_applied = line.split("not_applied=").nth(1).unwrap_or_default();
    assert_eq!(not_applied.trim(), "server.max_body_bytes", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renaming_an_issuer_or_a_rule_never_lifts_a_stored_deny_entry() {
    let service = deny::builder().spawn_process().await;
    let admin = admin_token(&service.issuer);
    let token = |sub: &str| service.issuer.token().claim("sub", sub).sign();
    for body in [
        r#"{"issuer": "test", "subject": "alice", "reason": "bound to its issuer"}"#,
        r#"{"issuer": "test", "subject": "bob", "rule": "acme-main", "reason": "names a rule"}"#,
    ] {
        assert_eq!(service.post_deny(&admin, body).await.status(), 201);
    }
    // An entry stored before entries recorded their issuer's `iss`: by name alone.
    let db = sqlx::PgPool::connect(&service.database_url).await.unwrap();
    sqlx::query(
        "INSERT INTO deny_entries (issuer, subject, reason, added_by_issuer, added_by_subject, \
         request_id) VALUES ('test', '\"carol\"', 'stored by name', 'test', 'secops-admin', 'old')",
    )
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let status = async |sub: &str| service.issue(&token(sub)).await.status().as_u16();
    wait_for(RELOAD_SHOWS, async || {
        (status("carol").await == 403).then_some(())
    })
    .await
    .expect("the poll reads the older entry");
    let renamed = service
        .config_text
        .replace(r#"name = "test""#, r#"name = "ci""#)
        .replace(r#"issuer = "test""#, r#"issuer = "ci""#)
        .replace(r#"name = "acme-main""#, r#"name = "acme-renamed""#);

    service.write_config(&renamed);
    service.hangup();
    let switched = wait_for(RELOAD_SHOWS, async || {
        let whoami = service.whoami(&token("dave")).await;
        (whoami["issuer"] == "ci" && whoami["rule"] == "acme-renamed").then_some(())
    })
    .await;

    assert!(switched.is_some(), "never reloaded:\n{}", service.log());
    for sub in ["alice", "bob", "carol"] {
        assert_eq!(status(sub).await, 403, "{sub} is no longer denied");
    }
    assert_eq!(status("dave").await, 200, "others are served");
    let listed: Value = service.get_deny(&admin).await.json().await.unwrap();
    let entry = |sub: &str| {
        listed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"] == sub)
            .unwrap_or_else(|| panic!("{sub} is not listed: {listed}"))
            .clone()
    };
    assert_eq!(entry("alice")["iss"], service.issuer.url.as_str());
    assert_eq!(entry("alice").get("unresolved"), None, "{listed}");
    assert_eq!(entry("bob")["unresolved"], serde_json::json!(["rule"]));
    assert_eq!(entry("carol")["unresolved"], serde_json::json!(["issuer"]));
    assert!(
        service
            .log()
            .contains("a stored deny entry names what the config no longer has"),
        "the unresolved entries are not named in the log:\n{}",
        service.log()
    );
}
