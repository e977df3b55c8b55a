//! The npm strategy against a fake registry, CDN and raw-file host on loopback.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/fixtures.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use fake::{Fake, DEPRECATED, OLD_VERSION};
use fixtures::{fixture_schema, found, icon, png, FIXTURE_PACKAGES, SVG};
use futures_util::future::join_all;
use sluice_catalog::{CatalogError, IconFetch, IconShape, NpmConfig, NpmStrategy, Strategy};

const HTTP: &str = "@openfn/language-http";

/// The fake's registry, with no CDN and no icons.
fn npm(fake: &Fake, tweak: impl FnOnce(&mut NpmConfig)) -> NpmStrategy {
    let mut config = NpmConfig::new(&fake.url);
    config.timeout = Duration::from_secs(5);
    tweak(&mut config);
    NpmStrategy::new(config).unwrap()
}

/// The TSV's version of an adaptor, by short name.
fn latest(short: &str) -> String {
    let name = format!("@openfn/language-{short}");
    fake::tsv().into_iter().find(|r| r.0 == name).unwrap().1
}

#[tokio::test]
async fn search_lists_every_adaptor_and_only_adaptors() {
    let fake = Fake::start().await;
    let listed = npm(&fake, |_| ()).list().await.unwrap();
    let names: Vec<String> = listed.iter().map(|l| l.name.clone()).collect();
    let mut want: Vec<String> = fake::tsv().into_iter().map(|r| r.0).collect();
    want.sort();
    assert_eq!(want.len(), 108);
    let http = listed.iter().find(|l| l.name == HTTP).unwrap();
    assert_eq!(
        http.version,
        Some(latest("http")),
        "search tells each version"
    );
    assert_eq!(
        names, want,
        "@openfn/cli and @openfn/runtime are no adaptors"
    );
    assert_eq!(fake.calls(|p| p == "/-/v1/search"), 1);
}

#[tokio::test]
async fn search_follows_pages_when_the_registry_caps_their_size() {
    let fake = Fake::start().await;
    fake.switches().page_limit = Some(40);
    let listed = npm(&fake, |_| ()).list().await.unwrap();
    assert_eq!(listed.len(), 108);
    assert_eq!(fake.calls(|p| p == "/-/v1/search"), 3);
}

#[tokio::test]
async fn without_search_the_configured_list_is_used() {
    let fake = Fake::start().await;
    fake.switches().search_off = true;
    let listed = [HTTP, "@openfn/language-dhis2", "@openfn/cli", HTTP];
    let strategy = npm(&fake, |c| c.packages = listed.map(String::from).to_vec());
    let listed = strategy.list().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["@openfn/language-dhis2", HTTP]);
    assert!(
        listed.iter().all(|l| l.version.is_none()),
        "a list tells no version"
    );
    assert_eq!(fake.calls(|p| p == "/-/v1/search"), 1);
    assert_eq!(fake.calls(|_| true), 1, "listing reads no packument");

    let err = npm(&fake, |_| ()).list().await.unwrap_err();
    let unset = matches!(
        err,
        CatalogError::Config {
            setting: "packages",
            ..
        }
    );
    assert!(unset, "{err}");
}

#[tokio::test]
async fn packument_fields_are_parsed() {
    let fake = Fake::start().await;
    let strategy = npm(&fake, |_| ());

    let http = strategy.package(HTTP).await.unwrap();
    assert_eq!(http.name, HTTP);
    assert_eq!(http.description.as_deref(), Some("OpenFn adaptor http"));
    assert_eq!(http.latest, latest("http"));
    assert_eq!(http.deprecated, None);
    let versions: Vec<&str> = http.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, [&http.latest, OLD_VERSION], "upstream's order");
    let (new, old) = (&http.versions[0], &http.versions[1]);
    assert_eq!(old.deprecated, Some(format!("upgrade to {}", http.latest)));
    assert_eq!(new.deprecated, None, "an empty message is no deprecation");
    assert_eq!(old.published.as_deref(), Some("2020-01-01T00:00:00.000Z"));
    assert_eq!(new.published.as_deref(), Some("2026-08-01T12:00:00.000Z"));
    assert!(new.integrity.as_deref().unwrap().starts_with("sha512-"));
    let tarball = format!("{}/{HTTP}/-/language-http-{}.tgz", fake.url, http.latest);
    assert_eq!(new.tarball, Some(tarball));
    let unpacked = 1000 + fixture_schema("http").len() as u64;
    assert_eq!(new.unpacked_size, Some(unpacked));
    assert_eq!(new.dependencies["@openfn/language-common"], "3.3.4");

    let beyonic = strategy.package(DEPRECATED).await.unwrap();
    assert_eq!(beyonic.deprecated.as_deref(), Some("Beyonic has shut down"));

    let err = strategy.package("@openfn/language-nope").await.unwrap_err();
    assert!(matches!(err, CatalogError::UnknownPackage(_)), "{err}");
    let before = fake.calls(|_| true);
    let err = strategy.package("@openfn/language-../x").await.unwrap_err();
    assert!(matches!(err, CatalogError::BadName(_)), "{err}");
    assert_eq!(
        fake.calls(|_| true),
        before,
        "a bad name is never requested"
    );
}

/// Fetches the four fixture schemas and `common`'s (which has none), checking them.
async fn check_schemas(strategy: &NpmStrategy) {
    for short in FIXTURE_PACKAGES {
        let name = format!("@openfn/language-{short}");
        let schema = strategy.schema(&name, &latest(short)).await.unwrap();
        assert_eq!(schema.unwrap(), fixture_schema(short), "{short}");
    }
    let common = latest("common");
    let common = strategy.schema("@openfn/language-common", &common).await;
    assert_eq!(common.unwrap(), None, "common has no schema");
}

#[tokio::test]
async fn schema_from_the_cdn_pattern_is_byte_for_byte() {
    let fake = Fake::start().await;
    let pattern = format!(
        "{}/cdn/npm/{{name}}@{{version}}/configuration-schema.json",
        fake.url
    );
    check_schemas(&npm(&fake, |c| c.schema_url = Some(pattern))).await;
    assert_eq!(fake.calls(|p| p.ends_with(".tgz")), 0);
    assert_eq!(fake.calls(|p| p.starts_with("/cdn/")), 5);
}

#[tokio::test]
async fn schema_from_the_tarball_is_byte_for_byte() {
    let fake = Fake::start().await;
    let strategy = npm(&fake, |_| ());
    check_schemas(&strategy).await;
    let old = strategy.schema(HTTP, OLD_VERSION).await.unwrap();
    assert_eq!(old, None, "that version's tarball has no schema");
    assert_eq!(fake.calls(|p| p.ends_with(".tgz")), 6);
    assert_eq!(fake.calls(|p| p.starts_with("/cdn/")), 0);

    let err = strategy.schema(HTTP, "99.0.0").await.unwrap_err();
    assert!(matches!(err, CatalogError::UnknownVersion { .. }), "{err}");
}

#[tokio::test]
async fn a_tampered_tarball_fails_its_integrity_check() {
    let fake = Fake::start().await;
    fake.switches().tamper = true;
    let strategy = npm(&fake, |_| ());
    let err = strategy.schema(HTTP, &latest("http")).await.unwrap_err();
    let CatalogError::Integrity { url, reason } = &err else {
        panic!("not an integrity error: {err}");
    };
    assert!(url.ends_with(&format!("language-http-{}.tgz", latest("http"))));
    assert!(reason.starts_with("expected sha512-"), "{reason}");
}

#[tokio::test]
async fn icons_prefer_png_fall_back_to_svg_and_revalidate() {
    let fake = Fake::start().await;
    let strategy = npm(&fake, |c| c.icons_url = Some(format!("{}/raw", fake.url)));

    let (bytes, content_type, etag) = found(icon(&strategy, HTTP, IconShape::Square, None).await);
    assert_eq!((bytes, content_type), (png(), "image/png"));
    let again = icon(&strategy, HTTP, IconShape::Square, Some(&etag)).await;
    assert_eq!(again, IconFetch::NotModified);
    assert_eq!(
        fake.calls(|p| p == "/raw/packages/http/assets/square.png"),
        2
    );

    let rectangle = icon(&strategy, HTTP, IconShape::Rectangle, None).await;
    let (bytes, content_type, etag) = found(rectangle);
    assert_eq!((bytes.as_slice(), content_type), (SVG, "image/svg+xml"));
    assert_eq!(
        fake.calls(|p| p == "/raw/packages/http/assets/rectangle.png"),
        1
    );
    let again = icon(&strategy, HTTP, IconShape::Rectangle, Some(&etag)).await;
    assert_eq!(again, IconFetch::NotModified);

    let none = icon(&strategy, "@openfn/language-dhis2", IconShape::Square, None).await;
    assert_eq!(none, IconFetch::Missing);
    let unset = icon(&npm(&fake, |_| ()), HTTP, IconShape::Square, None).await;
    assert_eq!(unset, IconFetch::Missing, "no icons_url, no icons");
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let timeout = Duration::from_millis(300);
    let mut config = NpmConfig::new(&url);
    config.timeout = timeout;
    let started = Instant::now();
    let err = NpmStrategy::new(config).unwrap().list().await.unwrap_err();
    let took = started.elapsed();
    let timed_out = matches!(err, CatalogError::Timeout { timeout: t, .. } if t == timeout);
    assert!(timed_out && err.to_string().contains(&url), "{err}");
    assert!(took >= timeout && took < timeout * 4, "{took:?}");
}

#[tokio::test]
async fn fetch_concurrency_is_a_ceiling() {
    let fake = Fake::start().await;
    fake.switches().delay = Duration::from_millis(200);
    let strategy = npm(&fake, |c| c.fetch_concurrency = 3);
    let names: Vec<String> = fake::tsv().into_iter().take(12).map(|r| r.0).collect();
    let infos = join_all(names.iter().map(|n| strategy.package(n))).await;
    assert!(infos.iter().all(Result::is_ok));
    assert_eq!(fake.max_in_flight(), 3);
}

#[tokio::test]
async fn icon_concurrency_is_a_ceiling() {
    let fake = Fake::start().await;
    fake.switches().delay = Duration::from_millis(200);
    let strategy = npm(&fake, |c| {
        c.icons_url = Some(format!("{}/raw", fake.url));
        c.icon_concurrency = 2;
    });
    let icons = join_all((0..8).map(|_| strategy.icon(HTTP, IconShape::Square, None))).await;
    assert!(icons
        .iter()
        .all(|i| matches!(i, Ok(IconFetch::Found { .. }))));
    assert_eq!(fake.max_in_flight(), 2);
}

#[tokio::test]
async fn unusable_settings_are_refused() {
    let zero = NpmConfig {
        icon_concurrency: 0,
        ..NpmConfig::new("http://127.0.0.1:1")
    };
    let no_version = NpmConfig {
        schema_url: Some("http://127.0.0.1:1/npm/{name}/schema.json".into()),
        ..NpmConfig::new("http://127.0.0.1:1")
    };
    let ftp = NpmConfig::new("ftp://127.0.0.1:1");
    let no_ca = NpmConfig {
        extra_ca_pem: Some(b"not a certificate".to_vec()),
        ..NpmConfig::new("http://127.0.0.1:1")
    };
    for config in [zero, no_version, ftp, no_ca, NpmConfig::new("not a url")] {
        let err = NpmStrategy::new(config).unwrap_err();
        assert!(matches!(err, CatalogError::Config { .. }), "{err}");
    }
}
