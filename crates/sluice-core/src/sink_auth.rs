//! Sink-credential injection rules (PRODUCT.md §2 step 4): which `Authorization` value a stored
//! credential yields, and which credential schemas have a rule at all.

use serde_json::Value;

use crate::outcome::ExchangeError;
use crate::source_auth::basic_header;

/// Schema names with a dedicated rule.
pub const KNOWN_SCHEMAS: [&str; 3] = ["http", "dhis2", "oauth"];

/// What a credential yields towards the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Send this `Authorization` value.
    Header(String),
    /// An OAuth credential: its access token is used if still valid, else refreshed.
    OAuth,
}

/// Whether credentials of schema `name`, whose schema declares `properties`, can be injected:
/// a known schema, or one with `access_token` or `username` and `password`.
pub fn schema_has_rule<'a>(name: &str, properties: impl IntoIterator<Item = &'a str>) -> bool {
    if KNOWN_SCHEMAS.contains(&name) {
        return true;
    }
    let props: Vec<&str> = properties.into_iter().collect();
    props.contains(&"access_token") || (props.contains(&"username") && props.contains(&"password"))
}

/// A non-empty string field of a credential body.
pub fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn basic(body: &Value) -> Option<String> {
    Some(basic_header(
        field(body, "username")?,
        field(body, "password")?,
    ))
}

/// The rule for a credential of `schema` with `body`.
pub fn injection(schema: &str, body: &Value) -> Result<Injection, ExchangeError> {
    let missing = || ExchangeError::Credential("credential_missing_auth_fields".into());
    match schema {
        "oauth" => Ok(Injection::OAuth),
        "dhis2" => field(body, "pat")
            .map(|p| format!("ApiToken {p}"))
            .or_else(|| basic(body))
            .map(Injection::Header)
            .ok_or_else(missing),
        _ => {
            let found = field(body, "access_token")
                .map(|t| format!("Bearer {t}"))
                .or_else(|| basic(body))
                .map(Injection::Header);
            match found {
                Some(i) => Ok(i),
                None if schema == "http" => Err(missing()),
                None => Err(ExchangeError::Credential(format!(
                    "unsupported_credential_schema:{schema}"
                ))),
            }
        }
    }
}

/// The `expires_at` of an OAuth body in Unix seconds (an integer, or an RFC 3339 string).
pub fn expires_at(body: &Value) -> Option<i64> {
    match body.get("expires_at")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => crate::clock::parse_rfc3339(s).map(|us| us / 1_000_000),
        _ => None,
    }
}

/// The access token of an OAuth body if it is still valid `margin_s` seconds after `now_s`.
pub fn usable_access_token(body: &Value, now_s: i64, margin_s: i64) -> Option<&str> {
    let token = field(body, "access_token")?;
    match expires_at(body) {
        Some(exp) if exp <= now_s + margin_s => None,
        _ => Some(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(schema: &str, body: Value) -> Result<String, String> {
        match injection(schema, &body) {
            Ok(Injection::Header(h)) => Ok(h),
            Ok(Injection::OAuth) => Ok("oauth".into()),
            Err(e) => Err(e.code()),
        }
    }

    #[test]
    fn priorities() {
        let both = json!({"username": "u", "password": "p", "access_token": "t", "pat": "d2"});
        assert_eq!(header("http", both.clone()).unwrap(), "Bearer t");
        assert_eq!(header("dhis2", both).unwrap(), "ApiToken d2");
        let up = json!({"username": "u", "password": "p"});
        assert_eq!(header("http", up.clone()).unwrap(), "Basic dTpw");
        assert_eq!(header("dhis2", up.clone()).unwrap(), "Basic dTpw");
        assert_eq!(header("googlesheets", up).unwrap(), "Basic dTpw");
        assert_eq!(header("oauth", json!({})).unwrap(), "oauth");
    }

    #[test]
    fn failures_carry_the_contract_strings() {
        assert_eq!(
            header("http", json!({"username": "u"})).unwrap_err(),
            "credential_missing_auth_fields"
        );
        assert_eq!(
            header("dhis2", json!({"hostUrl": "x", "pat": ""})).unwrap_err(),
            "credential_missing_auth_fields"
        );
        assert_eq!(
            header("mailchimp", json!({"apiKey": "k"})).unwrap_err(),
            "unsupported_credential_schema:mailchimp"
        );
    }

    #[test]
    fn schema_rules() {
        assert!(schema_has_rule("dhis2", []));
        assert!(schema_has_rule("x", ["access_token"]));
        assert!(schema_has_rule("x", ["username", "password"]));
        assert!(!schema_has_rule("x", ["username", "apiKey"]));
    }

    #[test]
    fn oauth_expiry() {
        let b = json!({"access_token": "t", "expires_at": 1000});
        assert_eq!(usable_access_token(&b, 900, 60), Some("t"));
        assert_eq!(usable_access_token(&b, 950, 60), None);
        let s = json!({"access_token": "t", "expires_at": "1970-01-01T00:16:40Z"});
        assert_eq!(expires_at(&s), Some(1000));
        assert_eq!(
            usable_access_token(&json!({"access_token": "t"}), 0, 60),
            Some("t")
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ]
        }

        proptest! {
            /// Any credential body of any schema: a header or a named failure, never a panic,
            /// and a header only from non-empty fields.
            #[test]
            fn fuzz_any_credential_body_yields_a_header_or_a_reason(
                schema in prop_oneof![Just("http"), Just("dhis2"), Just("oauth"), Just("custom")],
                fields in proptest::collection::btree_map(
                    prop_oneof![Just("access_token"), Just("username"), Just("password"),
                                Just("pat"), Just("other")].prop_map(String::from),
                    value(),
                    0..5,
                ),
            ) {
                let body = Value::Object(fields.into_iter().collect());
                if let Ok(Injection::Header(h)) = injection(schema, &body) {
                    let (scheme, credentials) = h.split_once(' ').unwrap();
                    prop_assert!(["Bearer", "Basic", "ApiToken"].contains(&scheme));
                    prop_assert!(!credentials.is_empty());
                }
            }
        }
    }
}
