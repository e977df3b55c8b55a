//! Credential schemas: the one interface through which credential types are looked up
//! ([`SchemaSource`]), the schemas bundled with sluice (`http`, `dhis2`, `oauth`), validation of
//! bodies against them, and which fields are secret.

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

/// Where credential schemas come from. The bundled set now; the adaptor catalogue later.
pub trait SchemaSource: Send + Sync {
    /// The schema called `name`, if known.
    fn schema(&self, name: &str) -> Option<Arc<CredentialSchema>>;
    /// Every known schema name.
    fn names(&self) -> Vec<String>;
    /// The square icon of type `name`, when its adaptor has one.
    fn icon(&self, _name: &str) -> Option<Arc<AdaptorIcon>> {
        None
    }
}

/// An adaptor's square icon, served at `/adaptors/icons/{name}/{file}` and cached by browsers
/// for good: its file name changes with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptorIcon {
    /// The image.
    pub bytes: Vec<u8>,
    /// Its media type (`image/png`, `image/svg+xml`).
    pub content_type: String,
    /// `square-<first 8 hex digits of its SHA-256>.<png|svg>`.
    pub file: String,
}

impl AdaptorIcon {
    /// The icon of `bytes`, named by their hash.
    pub fn new(bytes: Vec<u8>, content_type: &str) -> Self {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let ext = if content_type.contains("svg") {
            "svg"
        } else {
            "png"
        };
        Self {
            file: format!("square-{}.{ext}", &sha[..8]),
            content_type: content_type.to_string(),
            bytes,
        }
    }
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

impl SchemaSource for BundledSchemas {
    fn schema(&self, name: &str) -> Option<Arc<CredentialSchema>> {
        self.by_name.get(name).cloned()
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The scope and prefix of adaptor package names; a credential type may be named either way
/// (`dhis2` or `@openfn/language-dhis2`).
const ADAPTOR_PREFIX: &str = "@openfn/language-";

/// The adaptor catalogue's credential schemas over the bundled ones: a type the catalogue has
/// comes from it, the bundled ones stay for the rest (`oauth`, and credentials made before).
pub struct CatalogSchemas {
    catalogue: HashMap<String, Arc<CredentialSchema>>,
    icons: HashMap<String, Arc<AdaptorIcon>>,
    bundled: BundledSchemas,
}

impl CatalogSchemas {
    /// Compiles `adaptors` (package name, `configuration-schema.json` text, square icon);
    /// returns the schemas and, for each one that did not compile, why.
    pub fn new(adaptors: Vec<(String, String, Option<AdaptorIcon>)>) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let mut catalogue = HashMap::new();
        let mut icons = HashMap::new();
        for (package, text, icon) in adaptors {
            let name = package.strip_prefix(ADAPTOR_PREFIX).unwrap_or(&package);
            if let Some(icon) = icon {
                icons.insert(name.to_string(), Arc::new(icon));
            }
            // serde_json keeps the text's key order: the form follows the schema's own.
            let compiled = serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("schema {name}: {e}"))
                .and_then(|doc| CredentialSchema::compile(name, doc));
            match compiled {
                Ok(schema) => {
                    catalogue.insert(name.to_string(), Arc::new(schema));
                }
                Err(e) => problems.push(e),
            }
        }
        let bundled = BundledSchemas::new();
        let schemas = Self {
            catalogue,
            icons,
            bundled,
        };
        (schemas, problems)
    }
}

impl SchemaSource for CatalogSchemas {
    fn schema(&self, name: &str) -> Option<Arc<CredentialSchema>> {
        let name = name.strip_prefix(ADAPTOR_PREFIX).unwrap_or(name);
        self.catalogue
            .get(name)
            .cloned()
            .or_else(|| self.bundled.schema(name))
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.catalogue.keys().cloned().collect();
        v.extend(self.bundled.names());
        v.sort();
        v.dedup();
        v
    }

    fn icon(&self, name: &str) -> Option<Arc<AdaptorIcon>> {
        let name = name.strip_prefix(ADAPTOR_PREFIX).unwrap_or(name);
        self.icons.get(name).cloned()
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
