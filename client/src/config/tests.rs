use super::*;
use std::path::Path;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
    Settings::from_env(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

fn config_error(vars: &[(&str, &str)]) -> String {
    match settings(vars) {
        Err(Error::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

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
