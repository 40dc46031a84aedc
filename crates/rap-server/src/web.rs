//! The web page at `/`: plain HTML, CSS and JavaScript embedded in the binary at build time
//! (no Node at run time, no build step). The page talks to the same `/v1` API as any client.
//! `web/vendor` holds the one library it uses, markdown-it (MIT, minified as published), with
//! its licence, served beside it: the page works offline.

use crate::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/style.css");
const MARKDOWN: &str = include_str!("../web/vendor/markdown-it.min.js");
const MARKDOWN_LICENSE: &str = include_str!("../web/vendor/markdown-it.LICENSE.txt");
/// The photo library panel (its own file, so it changes apart from the rest of the page).
const LIBRARY: &str = include_str!("../web/library.js");

fn asset(mime: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// `/`, `/app.js`, `/library.js`, `/style.css`, `/vendor/markdown-it.min.js` and its licence.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/library.js",
            get(|| async { asset("text/javascript; charset=utf-8", LIBRARY) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/vendor/markdown-it.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", MARKDOWN) }),
        )
        .route(
            "/vendor/markdown-it.LICENSE.txt",
            get(|| async { asset("text/plain; charset=utf-8", MARKDOWN_LICENSE) }),
        )
}
