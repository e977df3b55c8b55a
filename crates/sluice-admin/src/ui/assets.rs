//! The stylesheet and script, compiled into the binary and served under a path that carries a
//! hash of their content, so browsers may cache them forever and still see a new release.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../assets/sluice.css");
const JS: &str = include_str!("../../assets/sluice.js");

/// The first hex digits of the SHA-256 of both assets.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    h.update(CSS);
    h.update(JS);
    hex::encode(h.finalize())[..12].to_string()
});

/// Address of the stylesheet.
pub fn css_url() -> String {
    format!("/ui/assets/{}/sluice.css", *VERSION)
}

/// Address of the script.
pub fn js_url() -> String {
    format!("/ui/assets/{}/sluice.js", *VERSION)
}

/// `GET /ui/assets/{version}/{file}`: an old version's address answers 404 rather than today's
/// file under a name the browser will cache as something else.
pub async fn serve(Path((version, file)): Path<(String, String)>) -> Response {
    let (body, kind) = match file.as_str() {
        "sluice.css" => (CSS, "text/css; charset=utf-8"),
        "sluice.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if version != *VERSION {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}
