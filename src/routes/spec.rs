//! The API contract this binary was built with, served as written and as JSON.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// openapi.yaml as it was when the binary was built.
const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// The same document as JSON, converted once on first use rather than kept as a second file
/// that could drift. The unit test below proves the conversion succeeds for the built-in
/// document, so the `expect` cannot fire in a released binary.
static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    let document: serde_json::Value =
        serde_saphyr::from_str(OPENAPI_YAML).expect("openapi.yaml is valid YAML");
    serde_json::to_string(&document).expect("a JSON value serialises")
});

pub(super) fn router() -> super::Routes {
    super::Routes::new()
        .get("/openapi.yaml", get_openapi_yaml)
        .get("/openapi.json", get_openapi_json)
}

/// The contract as YAML (RFC 9512's media type).
async fn get_openapi_yaml() -> Response {
    document(OPENAPI_YAML, "application/yaml")
}

/// The contract as JSON.
async fn get_openapi_json() -> Response {
    document(OPENAPI_JSON.as_str(), "application/json")
}

fn document(body: &'static str, content_type: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_document_converts_to_json_with_its_paths() {
        let json: serde_json::Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        assert!(json["paths"]["/openapi.json"]["get"].is_object());
        assert!(json["paths"]["/v1/ecr/authorization-token"]["post"].is_object());
    }
}
