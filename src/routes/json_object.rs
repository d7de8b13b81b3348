//! Request bodies: one JSON object, read the same way by every endpoint that takes one, and
//! refused as problem+json like every other error.

use axum::body::Bytes;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// How every refusal of a body starts, so a caller can tell it from other 400s.
const REFUSAL: &str = "invalid request body: ";

/// A request body that is one JSON object, deserialised into `T`.
///
/// Unlike `axum::Json` it asks for no `Content-Type` (curl's `-d` sends a form type), but it
/// does ask for an object: serde would also read a struct from an array. As
/// `Option<JsonObject<T>>`, an empty body, or one of JSON's whitespace only, is `None`.
#[derive(Debug)]
pub(crate) struct JsonObject<T>(pub(crate) T);

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum BodyRejection {
    /// Larger than the configured `max_body_bytes`.
    TooLarge,
    /// The body could not be read; axum's text says why.
    Unreadable(String),
    /// Not a JSON object: an array, a string, a number, or nothing at all.
    NotAnObject,
    /// Not valid JSON, or not the fields and values `T` takes.
    Invalid(serde_json::Error),
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonObject<T> {
    type Rejection = BodyRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read(request, state).await?;
        parse(&bytes).map(Self)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for JsonObject<T> {
    type Rejection = BodyRejection;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let bytes = read(request, state).await?;
        if bytes.iter().all(is_json_whitespace) {
            return Ok(None);
        }
        parse(&bytes).map(|value| Some(Self(value)))
    }
}

/// The whole body, within the configured limit.
async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, BodyRejection> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => BodyRejection::TooLarge,
            _ => BodyRejection::Unreadable(rejection.body_text()),
        })
}

/// JSON's whitespace (RFC 8259): space, tab, line feed and carriage return. Rust's ASCII
/// whitespace also counts form feed, which a JSON parser refuses.
fn is_json_whitespace(byte: &u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyRejection> {
    if bytes.iter().find(|b| !is_json_whitespace(b)) != Some(&b'{') {
        return Err(BodyRejection::NotAnObject);
    }
    serde_json::from_slice(bytes).map_err(BodyRejection::Invalid)
}

impl BodyRejection {
    /// The refusal for a body that holds a secret: it says what was `expected` and where
    /// the JSON broke, and never quotes the body, as serde's messages about values do.
    pub(crate) fn quoting_nothing(self, expected: &str) -> ApiError {
        match self {
            Self::NotAnObject => refused(expected),
            Self::Invalid(e) if e.is_data() => refused(expected),
            Self::Invalid(e) => refused(&format!(
                "not valid JSON (at line {} column {})",
                e.line(),
                e.column()
            )),
            other => other.into(),
        }
    }
}

/// A 400 whose detail starts with [`REFUSAL`].
pub(crate) fn refused(why: &str) -> ApiError {
    ApiError::BadRequest(format!("{REFUSAL}{why}"))
}

impl From<BodyRejection> for ApiError {
    fn from(rejection: BodyRejection) -> Self {
        match rejection {
            BodyRejection::TooLarge => Self::PayloadTooLarge,
            BodyRejection::Unreadable(text) => Self::BadRequest(text),
            BodyRejection::NotAnObject => refused("expected a JSON object"),
            BodyRejection::Invalid(e) => refused(&e.to_string()),
        }
    }
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use proptest::prelude::*;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Named {
        name: String,
    }

    fn request(body: &str) -> Request {
        Request::new(Body::from(body.to_owned()))
    }

    async fn one(body: &str) -> Result<Named, String> {
        <JsonObject<Named> as FromRequest<()>>::from_request(request(body), &())
            .await
            .map(|JsonObject(named)| named)
            .map_err(|rejection| ApiError::from(rejection).to_string())
    }

    async fn optional(body: &str) -> Result<Option<Named>, String> {
        Option::<JsonObject<Named>>::from_request(request(body), &())
            .await
            .map(|found| found.map(|JsonObject(named)| named))
            .map_err(|rejection| ApiError::from(rejection).to_string())
    }

    fn named(name: &str) -> Named {
        Named {
            name: name.to_owned(),
        }
    }

    /// Any bytes, and text that starts like an object.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "[ \t\n]*[{][ -~]{0,48}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes as an issue request body: read or refused, never a panic, and never
        /// read unless they are one JSON object.
        #[test]
        fn any_body_is_read_only_as_an_object(bytes in body()) {
            let read = parse::<crate::policy::IssueRequest>(&bytes);
            let first = bytes.iter().find(|b| !is_json_whitespace(b)).copied();
            prop_assert!(read.is_err() || first == Some(b'{'), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn reads_an_object_with_or_without_surrounding_whitespace() {
        assert_eq!(one(r#"{"name": "a"}"#).await, Ok(named("a")));
        assert_eq!(one(" \n\t{\"name\": \"b\"}\r\n").await, Ok(named("b")));
        assert_eq!(optional(r#" {"name": "c"}"#).await, Ok(Some(named("c"))));
    }

    #[tokio::test]
    async fn only_the_optional_form_takes_an_empty_body() {
        for empty in ["", " ", "\r\n\t "] {
            assert_eq!(optional(empty).await, Ok(None), "{empty:?}");
            assert_eq!(
                one(empty).await,
                Err("invalid request body: expected a JSON object".to_owned()),
                "{empty:?}"
            );
        }
    }

    #[tokio::test]
    async fn whitespace_outside_json_is_no_empty_body() {
        // Form feed and vertical tab are ASCII whitespace, not JSON's.
        for body in ["\x0c", " \x0c\n", "\x0b"] {
            assert_eq!(
                optional(body).await,
                Err("invalid request body: expected a JSON object".to_owned()),
                "{body:?}"
            );
        }
    }

    #[tokio::test]
    async fn anything_but_an_object_is_refused_as_such() {
        // serde would read `Named` from `["a"]`.
        for body in [r#"["a"]"#, r#""a""#, "42", "null", "x{"] {
            assert_eq!(
                optional(body).await,
                Err("invalid request body: expected a JSON object".to_owned()),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn other_refusals_name_serdes_error() {
        for (body, says) in [
            (
                r#"{"name": 1}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (r#"{"name": "a", "x": 1}"#, "unknown field `x`"),
            (r#"{"name": "a", "name": "b"}"#, "duplicate field `name`"),
            (r#"{"name": "a""#, "EOF while parsing an object"),
            ("{}", "missing field `name`"),
        ] {
            let error = one(body).await.unwrap_err();
            assert!(
                error.starts_with("invalid request body: ") && error.contains(says),
                "{body}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn refusals_quoting_nothing_keep_values_out() {
        let quiet = |body: &str| {
            let body = body.to_owned();
            async move {
                match <JsonObject<Named> as FromRequest<()>>::from_request(request(&body), &())
                    .await
                {
                    Ok(_) => panic!("{body} was read"),
                    Err(rejection) => rejection.quoting_nothing("expected a name").to_string(),
                }
            }
        };
        for body in [
            r#"{"name": ["hunter2"]}"#,
            r#"{"name": "hunter2", "hunter2": 1}"#,
            r#"["hunter2"]"#,
        ] {
            assert_eq!(
                quiet(body).await,
                "invalid request body: expected a name",
                "{body}"
            );
        }
        assert_eq!(
            quiet(r#"{"name": "hunter2"#).await,
            "invalid request body: not valid JSON (at line 1 column 17)"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_too_large() {
        async fn handler(body: Result<JsonObject<Named>, BodyRejection>) -> StatusCode {
            match body {
                Ok(_) => StatusCode::OK,
                Err(rejection) => ApiError::from(rejection).status(),
            }
        }
        let app = Router::new()
            .route("/", post(handler))
            .layer(DefaultBodyLimit::max(16));
        let status = |body: &'static str| {
            let app = app.clone();
            async move {
                let request = Request::post("/").body(Body::from(body)).unwrap();
                let response = app.oneshot(request).await.unwrap();
                response.status()
            }
        };
        assert_eq!(status(r#"{"name": "a"}"#).await, StatusCode::OK);
        assert_eq!(
            status(r#"{"name": "abcdefgh"}"#).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
