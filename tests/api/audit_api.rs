//! Reading the audit log over HTTP: `GET /v1/audit/issuances` and `POST /v1/audit/lookup`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{
    FINGERPRINT_KEY, ROLE_ACCOUNT, ROLE_ARN, SECOND_ACCOUNT, TestApp, assert_problem, request_id,
};

const RELEASE_ROLE: &str = "arn:aws:iam::111122223333:role/ecr-release";
const ALICE: &str = "repo:acme/api:ref:refs/heads/main";
const BOB: &str = "repo:acme/web:ref:refs/tags/v1";
const AUDITOR: &str = "user:auditor";

/// Auditors first, so that their tokens (which match the acme rules too) are admins.
const RULES: &str = r#"
[[rules]]
name = "auditors"
issuer = "test"
claims = { actor = "auditor" }
role_arn = "arn:aws:iam::111122223333:role/ecr-audit"
regions = ["us-east-1"]

[[rules]]
name = "acme-main"
issuer = "test"
claims = { repository_owner = "acme", ref = "refs/heads/main" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["111122223333", "444455556666"]

[[rules]]
name = "acme-tags"
issuer = "test"
claims = { repository_owner = "acme", ref = "refs/tags/v*" }
role_arn = "arn:aws:iam::111122223333:role/ecr-release"
regions = ["us-east-1"]
"#;

/// Every field of an item of `GET /v1/audit/issuances`.
const ITEM_FIELDS: [&str; 28] = [
    "id",
    "occurredAt",
    "recordedAt",
    "requestId",
    "outcome",
    "reason",
    "httpStatus",
    "issuer",
    "subject",
    "rule",
    "roleArn",
    "sessionName",
    "regions",
    "registryIds",
    "access",
    "repositories",
    "sessionTags",
    "proxyEndpoints",
    "expiresAt",
    "tokenFingerprints",
    "fingerprintKeyId",
    "fromCache",
    "clientAddr",
    "userAgent",
    "latencyMs",
    "upstreamError",
    "callerRequestId",
    "shed",
];

pub(crate) fn builder() -> crate::helpers::TestAppBuilder {
    TestApp::builder().rules(RULES).admin_rules(&["auditors"])
}

fn alice(app: &TestApp) -> String {
    app.token()
}

fn bob(app: &TestApp) -> String {
    app.issuer
        .token()
        .claim("sub", BOB)
        .claim("repository", "acme/web")
        .claim("ref", "refs/tags/v1")
        .sign()
}

pub(crate) fn auditor(app: &TestApp) -> String {
    app.issuer
        .token()
        .claim("sub", AUDITOR)
        .claim("actor", "auditor")
        .sign()
}

/// A refused issuing request of `token`'s caller: a denied record, without calling AWS.
async fn denied(app: &TestApp, token: &str) -> String {
    let response = app
        .issue(Some(token), Some(json!({"region": "ap-south-1"})))
        .await;
    assert_eq!(response.status(), 403);
    request_id(&response)
}

async fn issued(app: &TestApp, token: &str) -> (String, Value) {
    let response = app.issue(Some(token), None).await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    (id, response.json().await.unwrap())
}

/// Five records, oldest first: alice issued, bob issued, alice denied, an anonymous caller
/// denied, alice issued. Returns their request ids.
async fn seed(app: &TestApp) -> Vec<String> {
    let mut ids = vec![
        issued(app, &alice(app)).await.0,
        issued(app, &bob(app)).await.0,
        denied(app, &alice(app)).await,
    ];
    let anonymous = app.issue(None, None).await;
    assert_eq!(anonymous.status(), 401);
    ids.push(request_id(&anonymous));
    ids.push(issued(app, &alice(app)).await.0);
    ids
}

/// A 200 page of `GET /v1/audit/issuances`.
async fn page(app: &TestApp, token: &str, query: &[(&str, &str)]) -> Value {
    let response = app.audit_issuances(token, query).await;
    assert_eq!(response.status(), 200, "{query:?}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["requestId"], id.as_str());
    body
}

/// The request ids of a page's items, in order.
fn request_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["requestId"].as_str().unwrap().to_owned())
        .collect()
}

/// The request ids of `all` at `positions`, newest first, as pages list them.
fn newest_first(all: &[String], positions: &[usize]) -> Vec<String> {
    positions.iter().rev().map(|&i| all[i].clone()).collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp string"))
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// Asserts that an item shows exactly the stored row.
fn assert_item_is_row(item: &Value, row: &Value) {
    let fields: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = ITEM_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(fields, expected, "{item}");
    for (field, column) in [
        ("id", "id"),
        ("requestId", "request_id"),
        ("outcome", "outcome"),
        ("reason", "reason"),
        ("httpStatus", "http_status"),
        ("issuer", "issuer"),
        ("subject", "subject"),
        ("rule", "rule"),
        ("roleArn", "role_arn"),
        ("sessionName", "session_name"),
        ("regions", "regions"),
        ("registryIds", "registry_ids"),
        ("access", "access"),
        ("repositories", "repositories"),
        ("proxyEndpoints", "proxy_endpoints"),
        ("tokenFingerprints", "token_fingerprints"),
        ("fingerprintKeyId", "fingerprint_key_id"),
        ("fromCache", "from_cache"),
        ("clientAddr", "client_addr"),
        ("userAgent", "user_agent"),
        ("latencyMs", "latency_ms"),
        ("upstreamError", "upstream_error"),
        ("callerRequestId", "caller_request_id"),
        ("shed", "shed"),
    ] {
        assert_eq!(item[field], row[column], "{field} of {item}");
    }
    assert_eq!(
        item["sessionTags"],
        row["session_tags"]
            .as_object()
            .map_or(json!({}), |t| json!(t))
    );
    for (field, column) in [("occurredAt", "occurred_at"), ("recordedAt", "recorded_at")] {
        let shown = item[field].as_str().unwrap();
        assert!(
            shown.ends_with('Z') && shown.len() == 27,
            "{field}: {shown}"
        );
        assert_eq!(time(&item[field]), time(&row[column]), "{field}");
    }
    match &row["expires_at"] {
        Value::Null => assert_eq!(item["expiresAt"], Value::Null),
        stored => assert_eq!(
            item["expiresAt"],
            time(stored).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    }
}

#[tokio::test]
async fn a_caller_sees_only_its_own_records() {
    let app = builder().spawn().await;
    let ids = seed(&app).await;

    let own = page(&app, &alice(&app), &[]).await;
    let asking_for_bob = page(&app, &alice(&app), &[("subject", BOB)]).await;
    let bobs = page(&app, &bob(&app), &[]).await;

    assert_eq!(request_ids(&own), newest_first(&ids, &[0, 2, 4]));
    assert_eq!(own["nextCursor"], Value::Null);
    let rows = app.audit_rows().await;
    for item in own["items"].as_array().unwrap() {
        assert_eq!(item["subject"], ALICE);
        let row = rows.iter().find(|r| r["id"] == item["id"]).unwrap();
        assert_item_is_row(item, row);
    }
    let first = &own["items"][2];
    assert_eq!(first["outcome"], "issued");
    assert_eq!(first["rule"], "acme-main");
    assert_eq!(first["roleArn"], ROLE_ARN);
    assert_eq!(first["fingerprintKeyId"], "test-key");
    assert_eq!(first["tokenFingerprints"].as_array().unwrap().len(), 1);
    assert_eq!(first["clientAddr"], "127.0.0.1");
    assert_eq!(own["items"][1]["outcome"], "denied");
    assert_eq!(own["items"][1]["httpStatus"], 403);
    assert_eq!(request_ids(&asking_for_bob), Vec::<String>::new());
    assert_eq!(request_ids(&bobs), newest_first(&ids, &[1]));
}

#[tokio::test]
async fn an_admin_sees_every_record() {
    let app = builder().spawn().await;
    let ids = seed(&app).await;

    let all = page(&app, &auditor(&app), &[]).await;

    assert_eq!(request_ids(&all), newest_first(&ids, &[0, 1, 2, 3, 4]));
    let anonymous = &all["items"][1];
    assert_eq!(anonymous["issuer"], Value::Null);
    assert_eq!(anonymous["subject"], Value::Null);
    assert_eq!(anonymous["reason"], "invalid_token:missing_token");
    let rows = app.audit_rows().await;
    for (item, row) in all["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(rows.iter().rev())
    {
        assert_item_is_row(item, row);
    }
}

#[tokio::test]
async fn filters_narrow_the_records() {
    let app = builder().spawn().await;
    let ids = seed(&app).await;
    let admin = auditor(&app);
    let all = page(&app, &admin, &[]).await;
    // Items are newest first: index 4 - i is the i-th record of `seed`.
    let occurred = |i: usize| {
        all["items"][4 - i]["occurredAt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (second, third, fourth) = (occurred(1), occurred(2), occurred(3));

    // (query, which records of `seed` it finds)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [usize]);
    let cases: Vec<Case<'_>> = vec![
        (vec![("subject", ALICE)], &[0, 2, 4]),
        (vec![("issuer", "test")], &[0, 1, 2, 4]),
        (vec![("issuer", "elsewhere")], &[]),
        (vec![("rule", "acme-tags")], &[1]),
        (vec![("role", ROLE_ARN)], &[0, 2, 4]),
        (vec![("role", RELEASE_ROLE)], &[1]),
        (vec![("outcome", "denied")], &[2, 3]),
        (vec![("outcome", "issued")], &[0, 1, 4]),
        (vec![("outcome", "error")], &[]),
        (vec![("since", &third)], &[2, 3, 4]),
        (vec![("until", &third)], &[0, 1]),
        (vec![("since", &second), ("until", &fourth)], &[1, 2]),
        (vec![("subject", ALICE), ("outcome", "issued")], &[0, 4]),
    ];
    for (query, expected) in cases {
        let found = page(&app, &admin, &query).await;
        assert_eq!(
            request_ids(&found),
            newest_first(&ids, expected),
            "{query:?}"
        );
    }

    // Within a caller's own records, filters narrow further.
    let own_denied = page(&app, &alice(&app), &[("outcome", "denied")]).await;
    assert_eq!(request_ids(&own_denied), newest_first(&ids, &[2]));
    let own_tags = page(&app, &alice(&app), &[("rule", "acme-tags")]).await;
    assert_eq!(request_ids(&own_tags), Vec::<String>::new());
}

/// Follows `nextCursor` from the first page to the last; returns every page.
async fn every_page(app: &TestApp, token: &str, limit: &str) -> Vec<Value> {
    let mut pages = vec![page(app, token, &[("limit", limit)]).await];
    while let Some(cursor) = pages.last().unwrap()["nextCursor"]
        .as_str()
        .map(str::to_owned)
    {
        pages.push(page(app, token, &[("limit", limit), ("cursor", &cursor)]).await);
        assert!(pages.len() < 100, "pagination does not end");
    }
    pages
}

#[tokio::test]
async fn pages_return_every_record_once_newest_first() {
    let app = builder().spawn().await;
    let mut own = Vec::new();
    for i in 0..7 {
        own.push(denied(&app, &alice(&app)).await);
        if i % 2 == 0 {
            denied(&app, &bob(&app)).await;
        }
    }
    let everything: Vec<i64> = app
        .audit_rows()
        .await
        .iter()
        .rev()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(everything.len(), 11);

    let admin_pages = every_page(&app, &auditor(&app), "4").await;
    let own_pages = every_page(&app, &alice(&app), "3").await;
    let exact_pages = every_page(&app, &alice(&app), "7").await;

    let sizes = |pages: &[Value]| -> Vec<usize> {
        pages
            .iter()
            .map(|p| p["items"].as_array().unwrap().len())
            .collect()
    };
    let ids = |pages: &[Value]| -> Vec<i64> {
        pages
            .iter()
            .flat_map(|p| p["items"].as_array().unwrap().clone())
            .map(|i| i["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(sizes(&admin_pages), [4, 4, 3]);
    assert_eq!(ids(&admin_pages), everything);
    assert_eq!(sizes(&own_pages), [3, 3, 1]);
    own.reverse();
    let own_ids: Vec<String> = own_pages.iter().flat_map(request_ids).collect();
    assert_eq!(own_ids, own);
    // A full last page says there is no more, rather than leading to an empty one.
    assert_eq!(sizes(&exact_pages), [7]);
}

#[tokio::test]
async fn a_cursor_stays_put_while_records_are_appended() {
    let app = builder().spawn().await;
    let mut before = Vec::new();
    for _ in 0..5 {
        before.push(denied(&app, &alice(&app)).await);
    }
    before.reverse();
    let token = alice(&app);

    let first = page(&app, &token, &[("limit", "2")]).await;
    let again = page(&app, &token, &[("limit", "2")]).await;
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let newer = [denied(&app, &token).await, denied(&app, &token).await];
    let second = page(&app, &token, &[("limit", "2"), ("cursor", &cursor)]).await;
    let rest = page(
        &app,
        &token,
        &[
            ("limit", "2"),
            ("cursor", second["nextCursor"].as_str().unwrap()),
        ],
    )
    .await;
    let fresh = page(&app, &token, &[("limit", "2")]).await;

    assert_eq!(again["items"], first["items"]);
    assert_eq!(again["nextCursor"], first["nextCursor"]);
    assert_eq!(request_ids(&first), before[..2]);
    assert_eq!(request_ids(&second), before[2..4]);
    assert_eq!(request_ids(&rest), before[4..]);
    assert_eq!(rest["nextCursor"], Value::Null);
    assert_eq!(request_ids(&fresh), [newer[1].clone(), newer[0].clone()]);
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_parameter() {
    let app = builder().spawn().await;
    let token = alice(&app);
    let too_long = "x".repeat(1025);
    let cases: [(&[(&str, &str)], &str); 14] = [
        (&[("limit", "0")], "`limit`"),
        (&[("limit", "201")], "`limit`"),
        (&[("limit", "ten")], "`limit`"),
        (&[("outcome", "granted")], "`outcome`"),
        (&[("since", "yesterday")], "`since`"),
        (&[("until", "2026-11-23")], "`until`"),
        (&[("role", "ecr-pull")], "`role`"),
        (&[("cursor", "bm90LWEtY3Vyc29y")], "`cursor`"),
        (&[("subject", "")], "`subject`"),
        (&[("limit", "5"), ("limit", "6")], "`limit`"),
        (&[("page", "2")], "`page`"),
        // Text Postgres cannot hold, and text longer than any name: the caller's mistake,
        // never a failed read.
        (&[("issuer", "\u{db}\0%")], "`issuer`"),
        (&[("subject", "a\0")], "`subject`"),
        (&[("rule", &too_long)], "`rule`"),
    ];
    for (query, name) in cases {
        let response = app.audit_issuances(&token, query).await;
        let body = assert_problem(response, 400, "bad-request").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(name), "{query:?}: {detail}");
    }
}

#[tokio::test]
async fn an_empty_time_range_is_an_empty_page() {
    let app = builder().spawn().await;
    let token = alice(&app);
    assert_eq!(app.issue(Some(&token), None).await.status(), 200);

    let response = app
        .audit_issuances(
            &token,
            &[
                ("since", "2026-11-24T00:00:00Z"),
                ("until", "2026-11-23T00:00:00Z"),
            ],
        )
        .await;

    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["nextCursor"], Value::Null);
}

#[tokio::test]
async fn reading_the_log_needs_a_valid_token() {
    let app = builder().spawn().await;

    let anonymous = app
        .http
        .get(app.url("/v1/audit/issuances?limit=0"))
        .send()
        .await
        .unwrap();
    let expired = app.issuer.token().shifted(-3600).sign();
    let expired = app.audit_issuances(&expired, &[("limit", "0")]).await;

    assert_problem(anonymous, 401, "invalid-token").await;
    assert_problem(expired, 401, "invalid-token").await;
}

/// The password inside an ECR token.
fn password(token: &str) -> String {
    let decoded = String::from_utf8(STANDARD.decode(token).unwrap()).unwrap();
    decoded.strip_prefix("AWS:").unwrap().to_owned()
}

/// Asserts that no text shows the token, encoded or decoded.
fn assert_never_shown(token: &str, texts: &[String]) {
    let password = password(token);
    for text in texts {
        assert!(!text.contains(token), "the token is shown: {text}");
        assert!(!text.contains(&password), "the password is shown: {text}");
    }
}

/// The tokens of an issue response, in order.
fn tokens(body: &Value) -> Vec<String> {
    body["authorizationData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["authorizationToken"].as_str().unwrap().to_owned())
        .collect()
}

async fn lookup(app: &TestApp, admin: &str, token: &str) -> (Value, String) {
    let response = app
        .audit_lookup(admin, &json!({"authorizationToken": token}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let id = request_id(&response);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["requestId"], id.as_str());
    (body, text)
}

#[tokio::test]
async fn lookup_finds_an_issued_token() {
    let app = builder().spawn().await;
    let response = app
        .issue(
            Some(&alice(&app)),
            Some(json!({"registryIds": [ROLE_ACCOUNT, SECOND_ACCOUNT]})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let issue_request = request_id(&response);
    let issued: Value = response.json().await.unwrap();
    let rows_before = app.audit_rows().await;
    let row = &rows_before[0];
    let mut shown = Vec::new();

    for (i, token) in tokens(&issued).iter().enumerate() {
        let (body, text) = lookup(&app, &auditor(&app), token).await;
        shown.push(text);

        assert_eq!(body["issued"], true);
        assert_eq!(
            body["records"],
            json!([{
                "id": row["id"],
                "occurredAt": body["records"][0]["occurredAt"],
                "requestId": issue_request,
                "issuer": "test",
                "subject": ALICE,
                "rule": "acme-main",
                "roleArn": ROLE_ARN,
                "sessionName": row["session_name"],
                "expiresAt": issued["authorizationData"][i]["expiresAt"],
                "fingerprintKeyId": "test-key",
            }])
        );
        assert_eq!(
            time(&body["records"][0]["occurredAt"]),
            time(&row["occurred_at"])
        );
    }

    let rows_after = app.audit_rows().await;
    assert_eq!(rows_after, rows_before, "lookups are not audit records");
    let listing = app.audit_issuances(&auditor(&app), &[]).await;
    shown.push(listing.text().await.unwrap());
    shown.push(serde_json::to_string(&rows_after).unwrap());
    for token in tokens(&issued) {
        assert_never_shown(&token, &shown);
    }
}

#[tokio::test]
async fn lookup_says_when_a_token_was_not_issued_here() {
    let app = builder().spawn().await;
    seed(&app).await;
    let stranger = STANDARD.encode(format!("AWS:{}", uuid::Uuid::new_v4()));

    let (body, text) = lookup(&app, &auditor(&app), &stranger).await;

    assert_eq!(body["issued"], false);
    assert_eq!(body["records"], json!([]));
    assert_never_shown(&stranger, &[text]);
}

#[tokio::test]
async fn lookup_finds_tokens_fingerprinted_before_a_key_rotation() {
    const NEW_KEY: &str = "rotated-fingerprint-key-0123456789abcdef0123456789";
    let before = builder().spawn().await;
    let (old_request, old_issue) = issued(&before, &alice(&before)).await;
    let after = builder()
        .database_url(&before.database_url)
        .fingerprint_key("key-2", NEW_KEY)
        .previous_fingerprint_key("test-key", FINGERPRINT_KEY)
        .spawn()
        .await;
    // moto's tokens depend only on the registry, so the second token is for another one.
    let response = after
        .issue(
            Some(&alice(&after)),
            Some(json!({"registryIds": [SECOND_ACCOUNT]})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let new_request = request_id(&response);
    let new_issue: Value = response.json().await.unwrap();
    let old_token = &tokens(&old_issue)[0];
    let new_token = &tokens(&new_issue)[0];
    assert_ne!(old_token, new_token);

    let (old_found, old_text) = lookup(&after, &auditor(&after), old_token).await;
    let (new_found, new_text) = lookup(&after, &auditor(&after), new_token).await;
    // The service before the rotation does not know the new key.
    let (unknown, unknown_text) = lookup(&before, &auditor(&before), new_token).await;

    assert_eq!(old_found["issued"], true);
    assert_eq!(old_found["records"].as_array().unwrap().len(), 1);
    assert_eq!(old_found["records"][0]["requestId"], old_request.as_str());
    assert_eq!(old_found["records"][0]["fingerprintKeyId"], "test-key");
    assert_eq!(new_found["issued"], true);
    assert_eq!(new_found["records"].as_array().unwrap().len(), 1);
    assert_eq!(new_found["records"][0]["requestId"], new_request.as_str());
    assert_eq!(new_found["records"][0]["fingerprintKeyId"], "key-2");
    assert_eq!(unknown["issued"], false);
    let rows = after.audit_rows().await;
    let key_ids: Vec<&Value> = rows.iter().map(|r| &r["fingerprint_key_id"]).collect();
    assert_eq!(key_ids, [&json!("test-key"), &json!("key-2")]);
    let texts = [old_text, new_text, unknown_text];
    assert_never_shown(old_token, &texts);
    assert_never_shown(new_token, &texts);
}

#[tokio::test]
async fn lookup_is_for_audit_admins_only() {
    let app = builder().spawn().await;
    let (_, issue) = issued(&app, &alice(&app)).await;
    let token = &tokens(&issue)[0];
    let body = json!({"authorizationToken": token});
    let mut shown = Vec::new();

    let own = app.audit_lookup(&alice(&app), &body).await;
    let anonymous = app
        .http
        .post(app.url("/v1/audit/lookup"))
        .json(&body)
        .send()
        .await
        .unwrap();

    let own = assert_problem(own, 403, "forbidden").await;
    assert!(
        own["detail"].as_str().unwrap().contains("audit admins"),
        "{own}"
    );
    shown.push(own.to_string());
    shown.push(
        assert_problem(anonymous, 401, "invalid-token")
            .await
            .to_string(),
    );
    assert_never_shown(token, &shown);
}

#[tokio::test]
async fn a_malformed_lookup_is_refused_without_echoing_it() {
    let app = builder().spawn().await;
    let (_, issue) = issued(&app, &alice(&app)).await;
    let token = tokens(&issue)[0].clone();
    let password = password(&token);
    let admin = auditor(&app);
    let bodies = [
        json!(token),
        json!([token]),
        json!({}),
        json!({"authorizationToken": token, "note": token}),
        json!({"token": token}),
        json!({"authorizationToken": [token]}),
        json!({"authorizationToken": password}),
        json!({"authorizationToken": ""}),
    ];
    let mut shown = Vec::new();

    for body in &bodies {
        let response = app.audit_lookup(&admin, body).await;
        let problem = assert_problem(response, 400, "bad-request").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("invalid request body: "),
            "{problem}"
        );
        shown.push(problem.to_string());
    }
    let truncated = app
        .http
        .post(app.url("/v1/audit/lookup"))
        .bearer_auth(&admin)
        .body(format!(r#"{{"authorizationToken": "{token}"#))
        .send()
        .await
        .unwrap();
    shown.push(
        assert_problem(truncated, 400, "bad-request")
            .await
            .to_string(),
    );

    assert_never_shown(&token, &shown);
}
