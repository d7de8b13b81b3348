//! Settings from the environment and the config file: the endpoint under the base URL, a JWT never
//! sent in the clear or to odd URLs, exactly one JWT source, narrowing checked, where the cache and
//! the config file live.

use super::*;
use std::path::Path;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
    Settings::load(lookup(vars), None)
}

fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn config_error(vars: &[(&str, &str)]) -> String {
    match settings(vars) {
        Err(Error::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

const URL_VAR: &str = URL.var;
const JWT_VAR: &str = super::JWT.var;
const JWT_FILE_VAR: &str = JWT_FILE.var;
const JWT_COMMAND_VAR: &str = JWT_COMMAND.var;
const ACCESS_VAR: &str = ACCESS.var;
const REPOSITORIES_VAR: &str = REPOSITORIES.var;
const DURATION_VAR: &str = DURATION.var;
const TIMEOUT_VAR: &str = TIMEOUT.var;
const CACHE_DIR_VAR: &str = CACHE_DIR.var;
const BASE: (&str, &str) = (URL_VAR, "https://broker.example.com");
const JWT: (&str, &str) = (JWT_VAR, "header.payload.signature");

#[test]
fn the_endpoint_sits_under_the_base_url_and_its_prefix() {
    for (base, endpoint) in [
        (
            "https://broker.example.com",
            "https://broker.example.com/v1/ecr/authorization-token",
        ),
        (
            "https://example.com/broker",
            "https://example.com/broker/v1/ecr/authorization-token",
        ),
        (
            "https://example.com/broker/",
            "https://example.com/broker/v1/ecr/authorization-token",
        ),
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/v1/ecr/authorization-token",
        ),
        (
            "http://localhost:8080",
            "http://localhost:8080/v1/ecr/authorization-token",
        ),
        ("http://[::1]:80", "http://[::1]/v1/ecr/authorization-token"),
    ] {
        let s = settings(&[(URL_VAR, base), JWT]).unwrap();
        assert_eq!(s.endpoint.as_str(), endpoint, "{base}");
    }
}

#[test]
fn a_jwt_never_travels_in_the_clear_or_to_odd_urls() {
    for (base, why) in [
        ("http://broker.example.com", "must use https"),
        ("http://10.0.0.1", "must use https"),
        ("ftp://broker.example.com", "scheme"),
        ("https://user:pw@broker.example.com", "user name"),
        ("https://broker.example.com/?a=b", "query"),
        ("not a url", "is not a URL"),
    ] {
        let message = config_error(&[(URL_VAR, base), JWT]);
        assert!(message.contains(why), "{base}: {message}");
    }
    assert!(config_error(&[JWT]).contains("ECR_TOKEN_BROKER_URL is not set"));
}

#[test]
fn exactly_one_jwt_source() {
    assert!(settings(&[BASE]).unwrap().jwt.is_none());
    assert!(config_error(&[BASE, JWT, (JWT_FILE_VAR, "/t")]).contains("only one"));
    let s = settings(&[BASE, (JWT_VAR, ""), (JWT_FILE_VAR, "/var/run/token")]).unwrap();
    assert!(matches!(s.jwt, Some(JwtSource::File(p)) if p == Path::new("/var/run/token")));
    let s = settings(&[BASE, (JWT_COMMAND_VAR, "print-token")]).unwrap();
    assert!(matches!(s.jwt, Some(JwtSource::Command(c)) if c == "print-token"));
}

#[test]
fn narrowing_is_read_and_checked() {
    let s = settings(&[
        BASE,
        JWT,
        (ACCESS_VAR, "Push"),
        (REPOSITORIES_VAR, "team-a/api, team-a/web,"),
        (DURATION_VAR, "900"),
    ])
    .unwrap();
    assert_eq!(
        s.narrowing,
        Narrowing {
            access: Some("push".to_owned()),
            repositories: Some(vec!["team-a/api".to_owned(), "team-a/web".to_owned()]),
            duration_seconds: Some(900),
        }
    );
    assert_eq!(
        settings(&[BASE, JWT]).unwrap().narrowing,
        Narrowing::default()
    );
    assert!(config_error(&[BASE, JWT, (ACCESS_VAR, "admin")]).contains("pull or push"));
    assert!(config_error(&[BASE, JWT, (REPOSITORIES_VAR, " , ")]).contains("no repository"));
    assert!(config_error(&[BASE, JWT, (DURATION_VAR, "15m")]).contains("whole seconds"));
    assert!(config_error(&[BASE, JWT, (TIMEOUT_VAR, "0")]).contains("1 to 600"));
}

#[test]
fn the_cache_lives_under_the_xdg_cache_home_or_home() {
    let dir = |vars: &[(&str, &str)]| {
        let mut all = vec![BASE, JWT];
        all.extend_from_slice(vars);
        settings(&all).unwrap().cache_dir
    };
    assert_eq!(
        dir(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]),
        Some(PathBuf::from("/x/ecr-token-broker"))
    );
    assert_eq!(
        dir(&[("HOME", "/home/u")]),
        Some(PathBuf::from("/home/u/.cache/ecr-token-broker"))
    );
    assert_eq!(
        dir(&[(CACHE_DIR_VAR, "/c"), ("HOME", "/home/u")]),
        Some(PathBuf::from("/c"))
    );
    assert_eq!(dir(&[]), None);
}

/// A config file in `home`'s usual place holding `text`, mode 0600.
fn config_file(home: &Path, text: &str) {
    let dir = home.join(".config/ecr-token-broker");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

#[test]
fn the_config_file_fills_in_what_the_environment_leaves_unset() {
    let home = tempfile::tempdir().unwrap();
    let home_var = home.path().display().to_string();
    config_file(
        home.path(),
        "url = \"https://file.example.com\"\njwt_command = \"print-token\"\naccess = \"pull\"\n\
         timeout_seconds = 10\nrepositories = [\"team-a/*\"]\n\
         [registries.\"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"]\naccess = \"push\"\n",
    );
    let host = EcrHost::from_server_url("111122223333.dkr.ecr.eu-west-1.amazonaws.com").unwrap();

    // Only HOME: everything from the file, the registry's section first.
    let vars = [("HOME", home_var.as_str())];
    let s = Settings::load(lookup(&vars), Some(&host)).unwrap();
    assert_eq!(
        s.endpoint.as_str(),
        "https://file.example.com/v1/ecr/authorization-token"
    );
    assert!(matches!(s.jwt, Some(JwtSource::Command(c)) if c == "print-token"));
    assert_eq!(s.narrowing.access.as_deref(), Some("push"));
    assert_eq!(s.narrowing.repositories, Some(vec!["team-a/*".to_owned()]));
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(
        Settings::load(lookup(&vars), None)
            .unwrap()
            .narrowing
            .access
            .as_deref(),
        Some("pull")
    );

    // The environment wins, a JWT source of its own replacing the file's without a clash.
    let vars = [
        ("HOME", home_var.as_str()),
        (URL_VAR, "https://env.example.com"),
        (JWT_FILE_VAR, "/run/token"),
        (ACCESS_VAR, "pull"),
    ];
    let s = Settings::load(lookup(&vars), Some(&host)).unwrap();
    assert!(s.endpoint.as_str().starts_with("https://env.example.com/"));
    assert!(matches!(s.jwt, Some(JwtSource::File(p)) if p == Path::new("/run/token")));
    assert_eq!(s.narrowing.access.as_deref(), Some("pull"));

    // A bad value in the file is named by its key and the file.
    config_file(home.path(), "url = \"http://broker.example.com\"\n");
    let message = config_error(&[("HOME", home_var.as_str()), JWT]);
    assert!(
        message.starts_with("url in ") && message.contains("must use https"),
        "{message}"
    );
}

#[test]
fn the_config_file_is_found_where_the_variables_say() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("ecr-token-broker")).unwrap();
    std::fs::write(
        xdg.join("ecr-token-broker/config.toml"),
        "url = \"https://xdg.example.com\"\n",
    )
    .unwrap();
    let xdg_var = xdg.display().to_string();
    let s = settings(&[("XDG_CONFIG_HOME", &xdg_var), JWT]).unwrap();
    assert!(s.endpoint.as_str().starts_with("https://xdg.example.com/"));
    // Named explicitly, it must exist.
    let message = config_error(&[(file::CONFIG_FILE_VAR, "/nonexistent/client.toml"), JWT]);
    assert!(message.contains("/nonexistent/client.toml"), "{message}");
}

#[test]
fn ignoring_docker_login_is_opt_in() {
    let ignore = |value: &str| {
        let vars = [(IGNORE_DOCKER_LOGIN.var, value)];
        Sources::load(lookup(&vars)).unwrap().ignore_docker_login()
    };
    assert!(
        !Sources::load(lookup(&[]))
            .unwrap()
            .ignore_docker_login()
            .unwrap()
    );
    assert!(ignore("true").unwrap());
    assert!(ignore("1").unwrap());
    assert!(!ignore("false").unwrap());
    let message = ignore("maybe").unwrap_err().to_string();
    assert!(message.contains("true or false"), "{message}");
}
