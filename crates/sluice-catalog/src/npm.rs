//! The `npm` strategy: the npm registry or any mirror of it, a CDN for schemas, a raw-file host
//! for icons.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::strategy::{schema_text, short_name, ICON_FORMATS};
use crate::{
    integrity, packument, tarball, CatalogError, IconFetch, IconShape, Listed, PackageInfo,
    Strategy,
};

/// The registry's search page size (npm's maximum).
const SEARCH_PAGE: usize = 250;

/// Settings of [`NpmStrategy`]. Every upstream is a setting so a mirror or an internal proxy can
/// stand in for each.
#[derive(Debug, Clone)]
pub struct NpmConfig {
    /// Base URL of the registry (packuments and, when it has one, `/-/v1/search`).
    pub registry_url: String,
    /// Package names to use when the registry has no search endpoint (some mirrors do not).
    pub packages: Vec<String>,
    /// Schema URL pattern with `{name}` and `{version}`, e.g.
    /// `<cdn>/npm/{name}@{version}/configuration-schema.json`. Without it schemas come from the
    /// package tarball, which every registry and mirror serves.
    pub schema_url: Option<String>,
    /// Raw-file base URL of the adaptors monorepo, under which icons live at
    /// `packages/<short name>/assets/`. Without it every icon is [`IconFetch::Missing`].
    pub icons_url: Option<String>,
    /// Limit on each request, body included (not on the wait for a concurrency slot).
    pub timeout: Duration,
    /// Most listing, packument, schema and tarball requests in flight at once.
    pub fetch_concurrency: usize,
    /// Most icon requests in flight at once.
    pub icon_concurrency: usize,
    /// PEM certificates trusted besides the web roots: a mirror behind a private or
    /// intercepting certificate authority (sluice's `--extra-ca-file`).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl NpmConfig {
    /// The defaults for a registry: no fallback list, no CDN, no icons, 30 s timeout, 8 fetches
    /// and 20 icon requests at once.
    pub fn new(registry_url: impl Into<String>) -> Self {
        NpmConfig {
            registry_url: registry_url.into(),
            packages: Vec::new(),
            schema_url: None,
            icons_url: None,
            timeout: Duration::from_secs(30),
            fetch_concurrency: 8,
            icon_concurrency: 20,
            extra_ca_pem: None,
        }
    }
}

/// Reads adaptor packages from an npm registry over HTTP(S).
#[derive(Debug)]
pub struct NpmStrategy {
    client: reqwest::Client,
    registry: Url,
    packages: Vec<String>,
    schema_url: Option<String>,
    icons: Option<Url>,
    timeout: Duration,
    fetches: Semaphore,
    icon_fetches: Semaphore,
}

/// A response read to its end while holding a concurrency slot.
struct Fetched {
    url: String,
    status: StatusCode,
    etag: Option<String>,
    body: Vec<u8>,
}

impl Fetched {
    /// The body of a 200, or the status as an error.
    fn ok(self) -> Result<Vec<u8>, CatalogError> {
        match self.status {
            StatusCode::OK => Ok(self.body),
            status => Err(CatalogError::Status {
                url: self.url,
                status: status.as_u16(),
            }),
        }
    }
}

impl NpmStrategy {
    /// Checks the settings and builds the HTTP client.
    pub fn new(config: NpmConfig) -> Result<Self, CatalogError> {
        let limits = [
            ("fetch_concurrency", config.fetch_concurrency),
            ("icon_concurrency", config.icon_concurrency),
        ];
        if let Some((setting, _)) = limits.into_iter().find(|(_, n)| *n == 0) {
            return Err(CatalogError::config(setting, "must be at least 1"));
        }
        if let Some(pattern) = &config.schema_url {
            if !pattern.contains("{name}") || !pattern.contains("{version}") {
                let reason = "needs both {name} and {version}";
                return Err(CatalogError::config("schema_url", reason));
            }
            base_url("schema_url", &fill(pattern, "@openfn/language-x", "1.0.0"))?;
        }
        let mut client = reqwest::Client::builder();
        if let Some(pem) = &config.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| CatalogError::config("extra_ca_pem", e))?;
            if certs.is_empty() {
                return Err(CatalogError::config("extra_ca_pem", "holds no certificate"));
            }
            for cert in certs {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client
            .timeout(config.timeout)
            .user_agent(concat!("sluice-catalog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CatalogError::config("timeout", e))?;
        let icons = config.icons_url.as_deref();
        Ok(NpmStrategy {
            client,
            registry: base_url("registry_url", &config.registry_url)?,
            packages: config.packages,
            schema_url: config.schema_url,
            icons: icons.map(|u| base_url("icons_url", u)).transpose()?,
            timeout: config.timeout,
            fetches: Semaphore::new(config.fetch_concurrency),
            icon_fetches: Semaphore::new(config.icon_concurrency),
        })
    }

    /// GETs `url` within one slot of `slots`, reading the whole body before giving the slot back.
    async fn get(
        &self,
        slots: &Semaphore,
        url: Url,
        if_none_match: Option<&str>,
    ) -> Result<Fetched, CatalogError> {
        let _slot = slots.acquire().await.expect("never closed");
        let shown = url.to_string();
        let fail = |source: reqwest::Error| {
            let url = shown.clone();
            match source.is_timeout() {
                true => CatalogError::Timeout {
                    url,
                    timeout: self.timeout,
                },
                false => CatalogError::Http { url, source },
            }
        };
        let mut request = self.client.get(url);
        if let Some(tag) = if_none_match {
            request = request.header(IF_NONE_MATCH, tag);
        }
        let response = request.send().await.map_err(fail)?;
        let status = response.status();
        let etag = response.headers().get(ETAG).and_then(|v| v.to_str().ok());
        let etag = etag.map(str::to_string);
        let body = response.bytes().await.map_err(fail)?.to_vec();
        let url = shown;
        Ok(Fetched {
            url,
            status,
            etag,
            body,
        })
    }

    /// Lists through `/-/v1/search`, page by page; `None` when the registry has no such endpoint.
    async fn search(&self) -> Result<Option<Vec<Listed>>, CatalogError> {
        #[derive(Deserialize)]
        struct Page {
            objects: Vec<Object>,
            total: Option<usize>,
        }
        #[derive(Deserialize)]
        struct Object {
            package: Named,
        }
        #[derive(Deserialize)]
        struct Named {
            name: String,
            version: Option<String>,
        }
        let mut names = Vec::new();
        loop {
            let mut url = join(&self.registry, &["-", "v1", "search"]);
            url.query_pairs_mut()
                .append_pair("text", "@openfn")
                .append_pair("size", &SEARCH_PAGE.to_string())
                .append_pair("from", &names.len().to_string());
            let fetched = self.get(&self.fetches, url, None).await?;
            let absent = [
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED,
                StatusCode::NOT_IMPLEMENTED,
            ];
            if names.is_empty() && absent.contains(&fetched.status) {
                return Ok(None);
            }
            let at = fetched.url.clone();
            let page: Page =
                serde_json::from_slice(&fetched.ok()?).map_err(|e| CatalogError::json(at, e))?;
            let last = page.objects.is_empty();
            names.extend(page.objects.into_iter().map(|o| Listed {
                name: o.package.name,
                version: o.package.version,
            }));
            if last || page.total.is_none_or(|t| names.len() >= t) {
                return Ok(Some(names));
            }
        }
    }

    /// Reads `package/configuration-schema.json` from the version's tarball, after checking the
    /// tarball against the packument's `dist.integrity`.
    async fn schema_from_tarball(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<String>, CatalogError> {
        let info = self.package(name).await?;
        let Some(entry) = info.versions.into_iter().find(|v| v.version == version) else {
            let (name, version) = (name.to_string(), version.to_string());
            return Err(CatalogError::UnknownVersion { name, version });
        };
        let packument = join(&self.registry, &[name]);
        let Some(tarball) = entry.tarball else {
            let reason = format!("version {version} has no dist.tarball");
            return Err(CatalogError::malformed(packument, reason));
        };
        let url = Url::parse(&tarball).map_err(|e| {
            CatalogError::malformed(packument, format!("dist.tarball {tarball:?}: {e}"))
        })?;
        let body = self.get(&self.fetches, url, None).await?.ok()?;
        let sri = entry.integrity.as_deref().unwrap_or_default();
        if let Err(reason) = integrity::verify(sri, &body) {
            return Err(CatalogError::Integrity {
                url: tarball,
                reason,
            });
        }
        const PATH: &str = "package/configuration-schema.json";
        match tarball::read_file(&body, PATH) {
            Ok(file) => file
                .map(|bytes| schema_text(bytes, &format!("{tarball}!{PATH}")))
                .transpose(),
            Err(source) => Err(CatalogError::Tarball {
                url: tarball,
                source,
            }),
        }
    }
}

#[async_trait]
impl Strategy for NpmStrategy {
    async fn list(&self) -> Result<Vec<Listed>, CatalogError> {
        let listed = match self.search().await? {
            Some(found) => found,
            None if !self.packages.is_empty() => self
                .packages
                .iter()
                .map(|name| Listed {
                    name: name.clone(),
                    version: None,
                })
                .collect(),
            None => {
                let reason = "the registry has no search endpoint and no package list is set";
                return Err(CatalogError::config("packages", reason));
            }
        };
        Ok(Listed::tidy(listed))
    }

    async fn package(&self, name: &str) -> Result<PackageInfo, CatalogError> {
        short_name(name)?;
        let fetched = self.get(&self.fetches, join(&self.registry, &[name]), None);
        let fetched = fetched.await?;
        if fetched.status == StatusCode::NOT_FOUND {
            return Err(CatalogError::UnknownPackage(name.to_string()));
        }
        let at = fetched.url.clone();
        packument::parse(name, &fetched.ok()?, &at)
    }

    async fn schema(&self, name: &str, version: &str) -> Result<Option<String>, CatalogError> {
        let Some(pattern) = &self.schema_url else {
            return self.schema_from_tarball(name, version).await;
        };
        short_name(name)?;
        let url = base_url("schema_url", &fill(pattern, name, version))?;
        let fetched = self.get(&self.fetches, url, None).await?;
        if fetched.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let at = fetched.url.clone();
        schema_text(fetched.ok()?, &at).map(Some)
    }

    async fn icon(
        &self,
        name: &str,
        shape: IconShape,
        if_none_match: Option<&str>,
    ) -> Result<IconFetch, CatalogError> {
        let short = short_name(name)?;
        let Some(base) = &self.icons else {
            return Ok(IconFetch::Missing);
        };
        for (ext, content_type) in ICON_FORMATS {
            let file = format!("{}.{ext}", shape.as_str());
            let url = join(base, &["packages", short, "assets", &file]);
            let fetched = self.get(&self.icon_fetches, url, if_none_match).await?;
            match fetched.status {
                StatusCode::NOT_MODIFIED => return Ok(IconFetch::NotModified),
                StatusCode::NOT_FOUND => continue,
                _ => {
                    let etag = fetched.etag.clone();
                    return Ok(IconFetch::Found {
                        bytes: fetched.ok()?,
                        content_type,
                        etag,
                    });
                }
            }
        }
        Ok(IconFetch::Missing)
    }
}

/// The schema URL pattern with the package's name and version filled in.
fn fill(pattern: &str, name: &str, version: &str) -> String {
    pattern
        .replace("{name}", name)
        .replace("{version}", version)
}

/// `<base>/<segments…>`, each segment percent-encoded (so `@openfn/x` becomes `@openfn%2Fx`,
/// as the registry wants scoped names).
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base_url() accepted only http(s) URLs")
        .pop_if_empty()
        .extend(segments);
    url
}

/// Parses a configured URL, which must be absolute http(s).
fn base_url(setting: &'static str, raw: &str) -> Result<Url, CatalogError> {
    let url =
        Url::parse(raw).map_err(|e| CatalogError::config(setting, format!("{raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        let reason = format!("{raw:?} is not an http(s) URL");
        return Err(CatalogError::config(setting, reason));
    }
    Ok(url)
}
