//! The helper beside `docker login`: the opt-in that lets store and erase succeed without
//! doing anything, the config file that stands in for the environment, and `configure`,
//! which writes credHelpers for the registries the caller's rule allows.

use crate::helpers::{ROLE_ACCOUNT, SECOND_ACCOUNT};

use super::*;

/// docker login's input to `store`, with a password that must go nowhere.
const LOGIN_SECRET: &str = "hunter2-login-password";

fn login(server_url: &str) -> String {
    json!({"ServerURL": server_url, "Username": "AWS", "Secret": LOGIN_SECRET}).to_string()
}

/// Asserts success with empty stdout and one note on stderr that names `host`.
fn noted(output: &Output, host: &str, secrets: &[&str]) {
    assert_no_secret(output, secrets);
    assert!(output.status.success(), "{}", text(&output.stdout));
    assert_eq!(text(&output.stdout), "");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{BINARY}: ")) && stderr.contains(host),
        "{stderr}"
    );
}

#[tokio::test]
async fn docker_login_and_logout_succeed_without_effect_when_the_caller_opts_in() {
    // Arrange: a cached credential, and the opt-in
    let (app, jwt, machine) = broker_and_caller().await;
    let issued = machine.get(HOST, &[&jwt]).await;
    let machine = machine.set("ECR_TOKEN_BROKER_IGNORE_DOCKER_LOGIN", "true");

    // Act: what `docker login HOST` and `docker logout HOST` run
    let stored = machine
        .run(&["store"], &login(&format!("https://{HOST}")))
        .await;
    let erased = machine.run(&["erase"], &format!("https://{HOST}\n")).await;

    // Assert: both succeed, each with a note; the password went nowhere and the cache stays
    noted(&stored, HOST, &[LOGIN_SECRET, &jwt]);
    assert!(text(&stored.stderr).contains("ignored"));
    noted(&erased, HOST, &[&jwt]);
    let files = walk(machine.dir.path());
    for file in &files {
        let content = std::fs::read(file).unwrap();
        assert!(
            !String::from_utf8_lossy(&content).contains(LOGIN_SECRET),
            "{} holds the login's password",
            file.display()
        );
    }
    let again = machine.get(HOST, &[&jwt, LOGIN_SECRET]).await;
    assert_eq!(
        again["Secret"], issued["Secret"],
        "still the broker's password"
    );
    assert_eq!(
        app.audit_rows().await.len(),
        1,
        "served from the cache erase kept"
    );

    // Act / Assert: a login to a registry that is not ECR's is still refused, since
    // pretending would lose it
    let other = machine
        .run(&["store"], &login("https://index.docker.io/v1/"))
        .await;
    let message = one_line_failure(&other, &[LOGIN_SECRET]);
    assert!(message.contains("store is not supported"), "{message}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A machine whose client has no settings in its environment, only `HOME`: whatever it
/// needs must come from a config file.
fn bare_machine(broker: &str, jwt: &str) -> Machine {
    let machine = Machine::new(broker, jwt);
    let home = machine.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let home = home.display().to_string();
    machine
        .set("ECR_TOKEN_BROKER_URL", "")
        .set("ECR_TOKEN_BROKER_JWT_FILE", "")
        .set("ECR_TOKEN_BROKER_CACHE_DIR", "")
        .set("HOME", &home)
}

impl Machine {
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Writes `~/.config/ecr-token-broker/config.toml`, mode 0600.
    fn config_file(&self, text: &str) {
        let dir = self.home().join(".config/ecr-token-broker");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test]
async fn the_config_file_stands_in_for_the_environment_with_settings_per_registry() {
    // Arrange: nothing in the environment but HOME (as under sudo or a desktop launcher)
    let (app, jwt, _) = broker_and_caller().await;
    let machine = bare_machine(&app.address, &jwt);
    let narrowed = format!("{SECOND_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com");
    machine.config_file(&format!(
        "url = \"{broker}\"\njwt_file = \"{token}\"\nignore_docker_login = true\n\n\
         [registries.\"{narrowed}\"]\nrepositories = [\"team-a/*\"]\nduration_seconds = 900\n",
        broker = app.address,
        token = machine.token_file().display(),
    ));

    // Act
    let plain = machine.get(HOST, &[&jwt]).await;
    let narrow = machine.get(&narrowed, &[&jwt]).await;
    let stored = machine.run(&["store"], &login(HOST)).await;

    // Assert: both issued as the file says, the second narrowed by its section, cached in
    // the default place under HOME, and the file's opt-in honoured
    assert_eq!(plain["Username"], "AWS");
    assert_eq!(narrow["Username"], "AWS");
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["repositories"], json!(["*"]), "{}", rows[0]);
    assert_eq!(rows[1]["repositories"], json!(["team-a/*"]), "{}", rows[1]);
    let life = |row: &Value| {
        let at =
            |name: &str| chrono::DateTime::parse_from_rfc3339(row[name].as_str().unwrap()).unwrap();
        (at("expires_at") - at("occurred_at")).num_seconds()
    };
    assert!(life(&rows[0]) > 1700, "the rule's 1800 s: {}", rows[0]);
    assert!(life(&rows[1]) <= 900, "the section's 900 s: {}", rows[1]);
    let cache = machine.home().join(".cache/ecr-token-broker");
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    noted(&stored, HOST, &[LOGIN_SECRET, &jwt]);

    // Act / Assert: a file others may write is refused, as it names what to run
    let path = machine.home().join(".config/ecr-token-broker/config.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = machine.run(&["get"], HOST).await;
    let message = one_line_failure(&refused, &[&jwt]);
    assert!(message.contains("mode 0666"), "{message}");
}

#[tokio::test]
async fn configure_names_the_helper_for_every_registry_the_rule_allows() {
    // Arrange: a docker config with a login of another registry and settings of its own
    let (app, jwt, machine) = broker_and_caller().await;
    let home = machine.dir.path().join("home");
    let machine = machine.set("HOME", &home.display().to_string());
    let docker_config = home.join(".docker/config.json");
    std::fs::create_dir_all(docker_config.parent().unwrap()).unwrap();
    let before = json!({
        "auths": {"ghcr.io": {"auth": "b3RoZXI6c2VjcmV0"}},
        "credHelpers": {"gcr.io": "gcloud"},
        "psFormat": "table {{.ID}}\\t{{.Names}}",
    });
    std::fs::write(&docker_config, before.to_string()).unwrap();

    // Act
    let output = machine.run(&["configure"], "").await;

    // Assert: the rule's two registries in its two regions, everything else kept, private
    assert_quiet(&output, &[&jwt]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let mut hosts = Vec::new();
    for id in [ROLE_ACCOUNT, SECOND_ACCOUNT] {
        for region in ["eu-west-1", "us-east-1"] {
            hosts.push(format!("{id}.dkr.ecr.{region}.amazonaws.com"));
        }
    }
    assert_eq!(text(&output.stdout), hosts.join("\n") + "\n");
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(&docker_config).unwrap()).unwrap();
    let mut expected = before.clone();
    for host in &hosts {
        expected["credHelpers"][host] = json!("ecr-token-broker");
    }
    assert_eq!(after, expected);
    assert_eq!(mode(&docker_config), 0o600);
    assert!(
        app.audit_rows().await.is_empty(),
        "configure issues nothing"
    );

    // Act / Assert: docker then finds the helper for those hosts, and it answers
    let helper = after["credHelpers"][HOST].as_str().unwrap();
    assert_eq!(format!("docker-credential-{helper}"), BINARY);
    machine.get(HOST, &[&jwt]).await;

    // Act / Assert: a caller no rule allows is told so, and the file is left alone
    let stranger = stranger(&app);
    std::fs::write(machine.token_file(), &stranger).unwrap();
    let refused = machine.run(&["configure"], "").await;
    let message = one_line_failure(&refused, &[&stranger]);
    assert!(
        message.contains("the broker allows this caller nothing: no rule matches"),
        "{message}"
    );
    assert_eq!(text(&refused.stdout), "");
    let unchanged: Value =
        serde_json::from_str(&std::fs::read_to_string(&docker_config).unwrap()).unwrap();
    assert_eq!(unchanged, after);
}
