//! `IssueRequest`, what an issue request may ask for (endpoints, access, repositories, duration),
//! read from a JSON body or the query string with one grammar and one set of refusals. It only
//! parses: whether the rule allows it is decided in `grant.rs`.

use serde::{Deserialize, Deserializer};

use super::Rule;
use crate::domain::{Access, Region, RegistryHost, RegistryId, RepositoryPattern, SessionDuration};

/// At most this many registry endpoints (regions × registries, or hosts) per request.
pub(crate) const MAX_ENDPOINTS: usize = 20;
/// At most this many repository patterns per request.
pub(crate) const MAX_REPOSITORIES: usize = 20;

/// The optional body of an issue request: every field narrows what the matched rule allows.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawIssueRequest")]
pub(crate) struct IssueRequest {
    /// Endpoints asked for by region and registry; `None`: the rule's defaults.
    pub selection: Selection,
    /// `pull` (the default) or `push`.
    pub access: Access,
    /// Repository patterns; `None`: everything the rule allows.
    pub repositories: Option<Vec<RepositoryPattern>>,
    /// A session shorter than the rule's.
    pub duration_seconds: Option<SessionDuration>,
}

impl IssueRequest {
    /// The most `rule` allows one request: every region with every registry, its access,
    /// every repository and its longest session.
    pub(crate) fn widest(rule: &Rule) -> Self {
        Self {
            selection: Selection::Product {
                regions: Some(rule.regions.clone()),
                registry_ids: Some(rule.registry_ids.clone()),
            },
            access: rule.access,
            repositories: None,
            duration_seconds: None,
        }
    }
}

/// Which registry endpoints a request asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The rule's first region and first registry.
    #[default]
    Defaults,
    /// Every combination of these regions (default: the rule's first) and registries
    /// (default: the rule's first).
    Product {
        /// Regions, or `None` for the rule's first.
        regions: Option<Vec<Region>>,
        /// Registries, or `None` for the rule's first.
        registry_ids: Option<Vec<RegistryId>>,
    },
    /// These registry hosts, each naming its region and registry.
    Hosts(Vec<RegistryHost>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIssueRequest {
    region: Option<Region>,
    regions: Option<Vec<Region>>,
    registry_ids: Option<Vec<RegistryId>>,
    registries: Option<Vec<RegistryHost>>,
    access: Option<Access>,
    repositories: Option<Vec<RepositoryPattern>>,
    #[serde(default, deserialize_with = "whole_seconds")]
    duration_seconds: Option<SessionDuration>,
}

/// A session duration written as any JSON number with an integer value: JSON Schema, and so
/// the published contract, counts `900.0` and `9e2` as the integer 900.
fn whole_seconds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SessionDuration>, D::Error> {
    use serde::de::Error;
    let Some(seconds) = Option::<f64>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if seconds.fract() != 0.0 || seconds < 0.0 {
        return Err(D::Error::custom(format!(
            "{seconds} is not a whole number of seconds"
        )));
    }
    if seconds > f64::from(u32::MAX) {
        return Err(D::Error::custom(format!(
            "{seconds} seconds is far longer than any session STS allows"
        )));
    }
    // A whole number within u32's range, checked above: the cast is exact.
    let seconds = seconds as u32;
    SessionDuration::try_from(seconds)
        .map(Some)
        .map_err(D::Error::custom)
}

/// The fields that take a list: a query string gives one by repeating the parameter.
const LIST_FIELDS: [&str; 4] = ["regions", "registryIds", "registries", "repositories"];
/// The fields that take an integer: a query string gives one as its digits.
const INTEGER_FIELDS: [&str; 1] = ["durationSeconds"];

impl IssueRequest {
    /// Reads a request from decoded query parameters, by building the JSON object a body
    /// would be and reading that, so that the query and the body share one grammar and one
    /// set of refusals. A list field is given by repeating its parameter
    /// (`registries=a&registries=b`); any other parameter may appear once.
    pub(crate) fn from_query(pairs: Vec<(String, String)>) -> Result<Self, String> {
        use serde_json::{Map, Value};
        let mut object = Map::new();
        for (name, value) in pairs {
            if LIST_FIELDS.contains(&name.as_str()) {
                if let Value::Array(items) = object
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    items.push(Value::String(value));
                }
                continue;
            }
            if object.contains_key(&name) {
                return Err(format!("parameter `{name}` is given more than once"));
            }
            // Anything but plain digits stays a string, which serde refuses as the wrong type.
            let value = match value.parse::<u64>() {
                Ok(number) if INTEGER_FIELDS.contains(&name.as_str()) => Value::from(number),
                _ => Value::String(value),
            };
            object.insert(name, value);
        }
        serde_json::from_value(Value::Object(object)).map_err(|e| e.to_string())
    }

    /// How many registry endpoints this request asks for (the defaults are one).
    pub(crate) fn endpoint_count(&self) -> usize {
        match &self.selection {
            Selection::Defaults => 1,
            Selection::Product {
                regions,
                registry_ids,
            } => regions.as_ref().map_or(1, Vec::len) * registry_ids.as_ref().map_or(1, Vec::len),
            Selection::Hosts(hosts) => hosts.len(),
        }
    }
}

fn distinct<T: Ord + Clone>(field: &str, items: &[T], max: usize) -> Result<(), String> {
    if items.is_empty() || items.len() > max {
        return Err(format!("{field} must list 1 to {max} items"));
    }
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() == items.len() {
        Ok(())
    } else {
        Err(format!("{field} lists an item twice"))
    }
}

impl TryFrom<RawIssueRequest> for IssueRequest {
    type Error = String;

    fn try_from(raw: RawIssueRequest) -> Result<Self, Self::Error> {
        if raw.region.is_some() && raw.regions.is_some() {
            return Err("give region or regions, not both".to_owned());
        }
        let regions = raw.regions.or(raw.region.map(|r| vec![r]));
        let selection = match (raw.registries, regions, raw.registry_ids) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(
                    "registries names regions and registries itself: give it alone".to_owned(),
                );
            }
            (Some(hosts), None, None) => {
                distinct("registries", &hosts, MAX_ENDPOINTS)?;
                Selection::Hosts(hosts)
            }
            (None, None, None) => Selection::Defaults,
            (None, regions, registry_ids) => {
                let region_count = regions.as_ref().map_or(Ok(1), |r| {
                    distinct("regions", r, MAX_ENDPOINTS).map(|()| r.len())
                })?;
                let id_count = registry_ids.as_ref().map_or(Ok(1), |r| {
                    distinct("registryIds", r, MAX_ENDPOINTS).map(|()| r.len())
                })?;
                if region_count * id_count > MAX_ENDPOINTS {
                    return Err(format!(
                        "at most {MAX_ENDPOINTS} registry endpoints (regions × registryIds) per request"
                    ));
                }
                Selection::Product {
                    regions,
                    registry_ids,
                }
            }
        };
        if let Some(repositories) = &raw.repositories {
            distinct("repositories", repositories, MAX_REPOSITORIES)?;
        }
        Ok(Self {
            selection,
            access: raw.access.unwrap_or_default(),
            repositories: raw.repositories,
            duration_seconds: raw.duration_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(body: Value) -> Result<IssueRequest, serde_json::Error> {
        serde_json::from_value(body)
    }

    #[test]
    fn an_empty_object_asks_for_the_defaults() {
        assert_eq!(parse(json!({})).unwrap(), IssueRequest::default());
        assert_eq!(
            parse(json!({"access": null, "region": null})).unwrap(),
            IssueRequest::default()
        );
        assert_eq!(IssueRequest::default().access, Access::Pull);
    }

    #[test]
    fn a_duration_is_any_number_with_an_integer_value() {
        for body in [
            json!({"durationSeconds": 900}),
            json!({"durationSeconds": 900.0}),
            json!({"durationSeconds": 9e2}),
        ] {
            let request = parse(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(
                request.duration_seconds.map(|d| d.as_secs()),
                Some(900),
                "{body}"
            );
        }
    }

    #[test]
    fn region_is_shorthand_for_one_region() {
        let request =
            parse(json!({"region": "eu-west-1", "registryIds": ["123456789012"]})).unwrap();
        let Selection::Product {
            regions,
            registry_ids,
        } = request.selection
        else {
            panic!()
        };
        assert_eq!(
            regions.unwrap(),
            [Region::try_from("eu-west-1".to_owned()).unwrap()]
        );
        assert_eq!(
            registry_ids.unwrap(),
            [RegistryId::try_from("123456789012".to_owned()).unwrap()]
        );
    }

    #[test]
    fn registries_name_hosts() {
        let request = parse(json!({"registries": ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"], "access": "push"})).unwrap();
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(
            request.selection,
            Selection::Hosts(vec![RegistryHost::try_from(host.to_owned()).unwrap()])
        );
        assert_eq!(request.access, Access::Push);
    }

    #[test]
    fn contradictions_and_malformed_values_do_not_parse() {
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let alone = "registries names regions and registries itself: give it alone";
        for (body, error) in [
            (
                json!({"region": "eu-west-1", "regions": ["us-east-1"]}),
                "give region or regions, not both",
            ),
            (json!({"registries": [host], "region": "eu-west-1"}), alone),
            (
                json!({"registries": [host], "registryIds": ["123456789012"]}),
                alone,
            ),
            (
                json!({"registries": ["evil.example.com"]}),
                "\"evil.example.com\" is not an ECR registry host",
            ),
            (json!({"regions": []}), "regions must list 1 to 20 items"),
            (
                json!({"regions": ["us-east-1", "us-east-1"]}),
                "regions lists an item twice",
            ),
            (
                json!({"registryIds": []}),
                "registryIds must list 1 to 20 items",
            ),
            (
                json!({"registryIds": ["12"]}),
                "\"12\" is not a registry ID",
            ),
            (json!({"access": "admin"}), "unknown variant `admin`"),
            (
                json!({"repositories": ["team/*", "team/*"]}),
                "repositories lists an item twice",
            ),
            (
                json!({"repositories": ["../etc"]}),
                "\"../etc\" is not an ECR repository name or pattern",
            ),
            (
                json!({"durationSeconds": 60}),
                "60 seconds is outside the session durations STS allows",
            ),
            (
                json!({"durationSeconds": 900.5}),
                "900.5 is not a whole number of seconds",
            ),
            (
                json!({"durationSeconds": -900}),
                "-900 is not a whole number of seconds",
            ),
            (json!({"surprise": true}), "unknown field `surprise`"),
        ] {
            let message = parse(body.clone())
                .expect_err(&body.to_string())
                .to_string();
            assert!(message.starts_with(error), "{body}: {message}");
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Result<IssueRequest, String> {
        IssueRequest::from_query(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_query_reads_as_the_body_with_the_same_fields() {
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let other = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(query(&[]).unwrap(), IssueRequest::default());
        assert_eq!(
            query(&[
                ("registries", host),
                ("registries", other),
                ("access", "push")
            ])
            .unwrap(),
            parse(json!({"registries": [host, other], "access": "push"})).unwrap()
        );
        assert_eq!(
            query(&[
                ("region", "eu-west-1"),
                ("registryIds", "123456789012"),
                ("repositories", "team/*"),
                ("durationSeconds", "900"),
            ])
            .unwrap(),
            parse(
                json!({"region": "eu-west-1", "registryIds": ["123456789012"],
                         "repositories": ["team/*"], "durationSeconds": 900})
            )
            .unwrap()
        );
        // One item of a list field is still a list.
        assert_eq!(
            query(&[("regions", "us-east-1")]).unwrap(),
            parse(json!({"regions": ["us-east-1"]})).unwrap()
        );
    }

    #[test]
    fn a_query_is_refused_like_the_body() {
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        for (pairs, error) in [
            (
                &[("region", "eu-west-1"), ("regions", "us-east-1")][..],
                "give region or regions, not both",
            ),
            (
                &[("registries", host), ("region", "eu-west-1")],
                "registries names regions and registries itself",
            ),
            (
                &[("region", "a"), ("region", "b")],
                "parameter `region` is given more than once",
            ),
            (
                &[("access", "push"), ("access", "push")],
                "parameter `access` is given more than once",
            ),
            (
                &[("registries", host), ("registries", host)],
                "registries lists an item twice",
            ),
            (
                &[("durationSeconds", "900.0")],
                "invalid type: string \"900.0\", expected f64",
            ),
            (&[("durationSeconds", "-1")], "invalid type: string \"-1\""),
            (
                &[("durationSeconds", "99999999999")],
                "99999999999 seconds is far longer",
            ),
            (&[("access", "")], "unknown variant ``"),
            (&[("format", "x")], "unknown field `format`"),
        ] {
            let message = query(pairs).expect_err(&format!("{pairs:?}"));
            assert!(message.starts_with(error), "{pairs:?}: {message}");
        }
    }

    #[test]
    fn endpoints_are_counted_as_issued() {
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let other = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
        for (body, count) in [
            (json!({}), 1),
            (json!({"region": "eu-west-1"}), 1),
            (json!({"regions": ["eu-west-1", "us-east-1"]}), 2),
            (
                json!({"regions": ["eu-west-1", "us-east-1"], "registryIds": ["123456789012", "210987654321"]}),
                4,
            ),
            (json!({"registries": [host, other]}), 2),
        ] {
            assert_eq!(
                parse(body.clone()).unwrap().endpoint_count(),
                count,
                "{body}"
            );
        }
    }

    #[test]
    fn too_many_endpoints_are_refused() {
        let regions: Vec<String> = (1..=5).map(|i| format!("us-east-{i}")).collect();
        let ids: Vec<String> = (0..5).map(|i| format!("12345678901{i}")).collect();
        let error = parse(json!({"regions": regions, "registryIds": ids})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "at most 20 registry endpoints (regions × registryIds) per request"
        );
    }
}
