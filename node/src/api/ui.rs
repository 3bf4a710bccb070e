//! The web console: static assets (HTML, CSS, JavaScript ES modules) embedded in the binary and
//! served under `/ui` with exact content types and a strict Content-Security-Policy.
//!
//! The console is a client like `xinyi`: it talks to the same JSON API from the same origin,
//! signs entries and `X-Xinyi-Auth` reads in the browser with the key file the user picks (the
//! key never leaves the page), and verifies proofs, checkpoints and certificates itself with
//! WebCrypto (`node/ui/js/verify.js`). This module only serves files: it holds no state, reads
//! nothing from the ledger and grants no access the API does not grant. No CDN, no build step:
//! every file is listed in [`ASSETS`] and compiled in with `include_str!`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;

/// Content-Security-Policy of every console response: only this origin's scripts, styles and
/// API; no inline script, no eval, no framing, no plug-ins, no form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: path below `/ui/`, content type, contents.
pub struct Asset {
    /// Path below `/ui/` (`index.html`, `js/app.js`, ...).
    pub path: &'static str,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// File contents.
    pub body: &'static str,
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_str!(concat!("../../ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/cbor.js", JS),
    asset!("js/crypto.js", JS),
    asset!("js/entry.js", JS),
    asset!("js/i18n.js", JS),
    asset!("js/verify.js", JS),
    asset!("js/charts.js", JS),
];

/// The routes `/ui`, `/ui/` and `/ui/{*path}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
}

async fn index() -> Response {
    serve("index.html")
}

async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::not_found(format!("no console file {path:?}")).into_response();
    };
    let mut r = (StatusCode::OK, a.body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_the_csp() {
        for a in ASSETS {
            let r = serve(a.path);
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert!(!a.body.is_empty());
        }
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("js/nope.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn no_file_loads_anything_from_elsewhere() {
        for a in ASSETS {
            for bad in ["http://", "https://", "<script>", "eval(", "new Function"] {
                let hit = a
                    .body
                    .match_indices(bad)
                    .any(|(i, _)| !a.body[i..].starts_with("http://www.w3.org/2000/svg"));
                assert!(!hit, "{} contains {bad}", a.path);
            }
        }
    }
}
