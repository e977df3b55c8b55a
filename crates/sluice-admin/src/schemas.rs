//! Credential schemas: the schemas bundled with sluice (`http`, `dhis2`, `oauth`; the seed of
//! the adaptor catalogue, see `catalog`), validation of bodies against a schema, and which
//! fields are secret.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_core::sink_auth;

/// A compiled credential schema.
pub struct CredentialSchema {
    /// Schema name (`http`, `dhis2`, …).
    pub name: String,
    /// The JSON Schema document, field order kept.
    pub document: Value,
    validator: jsonschema::Validator,
}

impl CredentialSchema {
    /// Compiles `document` (draft 7; formats are checked).
    pub fn compile(name: &str, document: Value) -> Result<Self, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&document)
            .map_err(|e| format!("schema {name}: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            document,
            validator,
        })
    }

    /// Names of the declared properties, in schema order.
    pub fn properties(&self) -> Vec<&str> {
        self.document
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether `field` must never be returned: one the schema does not declare, `writeOnly`
    /// in the schema, or named like a password, token, secret, private key or PAT.
    pub fn is_secret(&self, field: &str) -> bool {
        let Some(declared) = self.document.pointer(&format!("/properties/{field}")) else {
            return true;
        };
        let write_only = declared
            .get("writeOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        write_only || secret_by_name(field)
    }

    /// Whether sluice knows how to inject credentials of this schema towards a sink.
    pub fn has_injection_rule(&self) -> bool {
        sink_auth::schema_has_rule(&self.name, self.properties())
    }

    /// Why `body` could not authenticate towards a sink, for a schema sluice injects: it lacks
    /// every field the schema's rule reads (`access_token`, or `username` and `password`; a
    /// DHIS2 `pat`).
    pub fn unusable(&self, body: &Value) -> Option<String> {
        if !self.has_injection_rule() || sink_auth::injection(&self.name, body).is_ok() {
            return None;
        }
        Some(match self.name.as_str() {
            "dhis2" => "carries no usable auth field: needs pat, or username and password".into(),
            _ => {
                "carries no usable auth field: needs access_token, or username and password".into()
            }
        })
    }

    /// Field errors of `body`, keyed `body.<field>`; messages never quote the value.
    pub fn errors(&self, body: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for e in self.validator.iter_errors(body) {
            let mut path = e.instance_path().to_string();
            if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                if let Some(p) = property.as_str() {
                    path = format!("{path}/{p}");
                }
            }
            let field = if path.is_empty() {
                "body".to_string()
            } else {
                format!("body{}", path.replace('/', "."))
            };
            out.entry(field)
                .or_insert_with(|| Value::String(e.masked().to_string()));
        }
        out
    }
}

/// Field names that are secret whatever the schema says.
pub fn secret_by_name(field: &str) -> bool {
    let f = field.to_ascii_lowercase();
    f == "pat"
        || [
            "password",
            "token",
            "secret",
            "private_key",
            "api_key",
            "apikey",
        ]
        .iter()
        .any(|w| f.contains(w))
}

/// The schemas shipped inside the binary (`crates/sluice-admin/schemas/*.json`).
pub struct BundledSchemas {
    by_name: HashMap<String, Arc<CredentialSchema>>,
}

impl BundledSchemas {
    /// Compiles the bundled schemas.
    pub fn new() -> Self {
        let files = [
            ("http", include_str!("../schemas/http.json")),
            ("dhis2", include_str!("../schemas/dhis2.json")),
            ("oauth", include_str!("../schemas/oauth.json")),
        ];
        let by_name = files
            .into_iter()
            .map(|(name, text)| {
                let doc: Value = serde_json::from_str(text).expect("bundled schema is JSON");
                let schema = CredentialSchema::compile(name, doc).expect("bundled schema compiles");
                (name.to_string(), Arc::new(schema))
            })
            .collect();
        Self { by_name }
    }
}

impl Default for BundledSchemas {
    fn default() -> Self {
        Self::new()
    }
}

impl BundledSchemas {
    /// The bundled schema called `name`.
    pub fn schema(&self, name: &str) -> Option<Arc<CredentialSchema>> {
        self.by_name.get(name).cloned()
    }

    /// The bundled schemas' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bundled_schemas_validate_and_know_their_secrets() {
        let s = BundledSchemas::new();
        assert_eq!(s.names(), ["dhis2", "http", "oauth"]);
        let dhis2 = s.schema("dhis2").unwrap();
        assert!(dhis2
            .errors(&json!({"hostUrl": "https://x.org", "pat": "p"}))
            .is_empty());
        let errs = dhis2.errors(&json!({"username": 5, "password": "hunter2"}));
        assert!(errs.contains_key("body.hostUrl"), "{errs:?}");
        assert!(errs.contains_key("body.username"), "{errs:?}");
        assert!(!Value::Object(errs).to_string().contains("hunter2"));
        assert!(dhis2.is_secret("password") && dhis2.is_secret("pat"));
        assert!(!dhis2.is_secret("username") && !dhis2.is_secret("hostUrl"));
        let oauth = s.schema("oauth").unwrap();
        assert!(oauth.is_secret("client_secret") && oauth.is_secret("refresh_token"));
        assert!(oauth
            .errors(&json!({"token_url": "not a url"}))
            .contains_key("body.token_url"));
        assert!(s
            .names()
            .iter()
            .all(|n| s.schema(n).unwrap().has_injection_rule()));
    }
}
