//! The local (air-gap) strategy over the fixture directories and a directory in front of them.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::path::PathBuf;

use fixtures::{fixture_schema, fixtures, found, icon, png, FIXTURE_PACKAGES, SVG};
use sluice_catalog::{CatalogError, IconFetch, IconShape, LocalStrategy, Strategy};

const HTTP: &str = "@openfn/language-http";

/// A fresh directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sluice-catalog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, path: &str, body: &[u8]) -> &Self {
        let path = self.0.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
        self
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_fixtures_list_their_four_packages_and_serve_their_schemas() {
    let local = LocalStrategy::new(vec![fixtures()]);
    let listed = local.list().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    let want = FIXTURE_PACKAGES.map(|s| format!("@openfn/language-{s}"));
    assert_eq!(names, want);
    let http = listed.iter().find(|l| l.name == HTTP).unwrap();
    assert_eq!(
        http.version.as_deref(),
        Some("7.2.10"),
        "listed with its version"
    );

    for short in FIXTURE_PACKAGES {
        let name = format!("@openfn/language-{short}");
        let info = local.package(&name).await.unwrap();
        assert_eq!(info.versions.len(), 1);
        assert_eq!(info.versions[0].version, info.latest);
        let schema = local.schema(&name, &info.latest).await.unwrap();
        assert_eq!(schema.unwrap(), fixture_schema(short), "{short}");
        let square = icon(&local, &name, IconShape::Square, None).await;
        assert_eq!(square, IconFetch::Missing, "the fixtures ship no icons");
    }
    let http = local.package(HTTP).await.unwrap();
    assert_eq!(http.latest, "7.2.10", "the version is package.json's");
    let other = local.schema(HTTP, "7.3.2").await.unwrap();
    assert_eq!(other, None, "only the version on disk has a schema");

    let err = local.package("@openfn/language-common").await.unwrap_err();
    assert!(matches!(err, CatalogError::UnknownPackage(_)), "{err}");
}

#[tokio::test]
async fn the_first_directory_wins_and_serves_icons() {
    let front = Scratch::new("front");
    let manifest =
        br#"{"name": "@openfn/language-http", "version": "9.0.0", "description": "patched"}"#;
    front
        .write("packages/http/package.json", manifest)
        .write(
            "packages/http/configuration-schema.json",
            b"{\"b\": 1, \"a\": 2}\n",
        )
        .write("packages/http/assets/square.svg", SVG)
        .write("packages/http/assets/rectangle.png", &png())
        .write("packages/http/assets/rectangle.svg", SVG)
        .write(
            "packages/extra/package.json",
            br#"{"name": "@openfn/language-extra", "version": "1.0.0"}"#,
        )
        .write(
            "packages/misplaced/package.json",
            br#"{"name": "@openfn/language-moved", "version": "1.0.0"}"#,
        )
        .write("packages/README.md", b"not a package");
    let local = LocalStrategy::new(vec![front.0.clone(), fixtures()]);

    let listed = local.list().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    let http = listed.iter().find(|l| l.name == HTTP).unwrap();
    assert_eq!(
        http.version.as_deref(),
        Some("9.0.0"),
        "the front copy is listed"
    );
    let want = ["dhis2", "extra", "googlesheets", "http", "msgraph"];
    let want = want.map(|s| format!("@openfn/language-{s}"));
    assert_eq!(
        names, want,
        "a package.json outside its own directory is not listed"
    );
    let http = local.package(HTTP).await.unwrap();
    assert_eq!(
        (http.latest.as_str(), http.description.as_deref()),
        ("9.0.0", Some("patched"))
    );
    let schema = local.schema(HTTP, "9.0.0").await.unwrap();
    assert_eq!(schema.as_deref(), Some("{\"b\": 1, \"a\": 2}\n"));
    let dhis2 = local.package("@openfn/language-dhis2").await.unwrap();
    assert_eq!(
        dhis2.latest, "8.2.1",
        "packages only behind come from behind"
    );

    let (bytes, content_type, etag) = found(icon(&local, HTTP, IconShape::Square, None).await);
    assert_eq!((bytes.as_slice(), content_type), (SVG, "image/svg+xml"));
    let again = icon(&local, HTTP, IconShape::Square, Some(&etag)).await;
    assert_eq!(again, IconFetch::NotModified);
    let stale = icon(&local, HTTP, IconShape::Square, Some("\"old\"")).await;
    assert_eq!(found(stale).2, etag);
    let (bytes, content_type, _) = found(icon(&local, HTTP, IconShape::Rectangle, None).await);
    assert_eq!(
        (bytes, content_type),
        (png(), "image/png"),
        "PNG before SVG"
    );
}

#[tokio::test]
async fn a_missing_directory_and_a_broken_manifest_are_errors() {
    let gone = std::env::temp_dir().join("sluice-catalog-does-not-exist");
    let err = LocalStrategy::new(vec![gone.clone()])
        .list()
        .await
        .unwrap_err();
    let io = matches!(&err, CatalogError::Io { path, .. } if path.starts_with(&gone));
    assert!(io, "{err}");

    let broken = Scratch::new("broken");
    broken.write("packages/http/package.json", b"{\"name\": ");
    let err = LocalStrategy::new(vec![broken.0.clone()])
        .list()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Json { .. }), "{err}");
    assert!(err.to_string().contains("package.json"), "{err}");
}
