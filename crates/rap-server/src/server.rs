//! The router and the process around it: the route table (also the source of
//! `/openapi.json`), request logging with ids, timeouts, body limits, authentication on
//! `/v1`, JSON 404/405 answers, and [`serve`] with graceful shutdown.

use crate::openapi::{Body, Doc, Op};
use crate::{api, auth, library, openai, web, ApiError, AppState};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const CONCEPT_FIELDS: &[(&str, &str)] = &[
    (
        "name",
        "the concept's name (required; unique per tenant, any case)",
    ),
    ("info", "what the model should know about it"),
    ("category", "e.g. dog, mug, person"),
    ("alias", "another name (repeatable)"),
    ("image", "a reference photo (repeatable; at least one)"),
];

/// Every API route: its documentation and its handler.
pub fn routes() -> Vec<(Op, MethodRouter<AppState>)> {
    const CONCEPT: &[(u16, &str, &str)] = &[
        (200, "the concept", "Concept"),
        (404, "no such concept in this tenant", ""),
    ];
    let op = |method, path, doc| Op { method, path, doc };
    vec![
        (op("get", "/v1/concepts", Doc { summary: "List the tenant's concepts", tag: "concepts", body: None,
            responses: &[(200, "all concepts, by name", "ConceptList")], auth: true }),
         get(api::list_concepts)),
        (op("post", "/v1/concepts", Doc { summary: "Remember a concept from one or more photos", tag: "concepts",
            body: Some(Body::Multipart(CONCEPT_FIELDS)),
            responses: &[(201, "the new concept", "Concept"), (409, "the name or an alias is taken", ""),
                (413, "the request is too large", ""), (503, "the server is busy (see Retry-After)", "")], auth: true }),
         post(api::create_concept)),
        (op("get", "/v1/concepts/{name}", Doc { summary: "One concept, by name or alias (any case)", tag: "concepts",
            body: None, responses: CONCEPT, auth: true }),
         get(api::get_concept)),
        (op("patch", "/v1/concepts/{name}", Doc { summary: "Rename or change info, category, aliases", tag: "concepts",
            body: Some(Body::Json("ConceptPatch")),
            responses: &[(200, "the changed concept", "Concept"), (404, "no such concept", ""), (409, "the new name is taken", "")], auth: true }),
         patch(api::patch_concept)),
        (op("delete", "/v1/concepts/{name}", Doc { summary: "Forget a concept (its keys and unused images too)", tag: "concepts",
            body: None, responses: &[(200, "the removed concept", "Deleted"), (404, "no such concept", "")], auth: true }),
         delete(api::delete_concept)),
        (op("post", "/v1/concepts/{name}/images", Doc { summary: "Add reference photos to a concept", tag: "concepts",
            body: Some(Body::Multipart(&[("image", "a reference photo (repeatable)")])),
            responses: &[(201, "the concept with its new images", "Concept"), (404, "no such concept", ""),
                (503, "the server is busy (see Retry-After)", "")], auth: true }),
         post(api::add_images)),
        (op("delete", "/v1/concepts/{name}/images/{image_id}", Doc { summary: "Remove a reference photo (a concept keeps at least one)",
            tag: "concepts", body: None,
            responses: &[(200, "the concept", "Concept"), (404, "no such concept or image", "")], auth: true }),
         delete(api::delete_image)),
        (op("post", "/v1/concepts/{name}/negatives", Doc { summary: "\"That's not it\": add a negative example (a photo, or a box of it)",
            tag: "concepts", body: Some(Body::Multipart(&[("image", "a photo of something that is not this concept"),
                ("box", "optional x1,y1,x2,y2: only this part of the photo (e.g. a retrieval hit's box)")])),
            responses: &[(201, "the concept with its negatives", "Concept"), (400, "no image, a bad box or a bad image", ""),
                (404, "no such concept", ""), (409, "the image is already one of the concept's", "")], auth: true }),
         post(api::add_negative)),
        (op("delete", "/v1/concepts/{name}/negatives/{image_id}", Doc { summary: "Remove a negative example",
            tag: "concepts", body: None,
            responses: &[(200, "the concept", "Concept"), (404, "no such concept or negative example", "")], auth: true }),
         delete(api::delete_negative)),
        (op("get", "/v1/images/{image_id}", Doc { summary: "The bytes of one of the tenant's images", tag: "concepts",
            body: None, responses: &[(200, "the image as stored", "binary"), (404, "no such image in this tenant", "")], auth: true }),
         get(api::get_image)),
        (op("post", "/v1/retrieve", Doc { summary: "Find the tenant's concepts in a photo and/or named in a text", tag: "retrieve",
            body: Some(Body::Multipart(&[("image", "the query photo"), ("text", "text to find names and aliases in"),
                ("top_k", "at most this many concepts (default 2)"), ("threshold", "one decision floor for every concept (default: each concept's calibrated floor)"), ("margin", "the margin over the runner-up concept (default 0.05)")])),
            responses: &[(200, "retrieved concepts, best first (as `rap retrieve --json`)", "Retrieval"),
                (503, "busy (see Retry-After), or no image encoder installed", "")], auth: true }),
         post(api::retrieve)),
        (op("get", "/v1/library/find", Doc { summary: "The photos of the library where a concept is (query: concept, limit), best first",
            tag: "library", body: None,
            responses: &[(200, "{concept, total, photos: [{photo, path, box, score, confidence, thumbnail}]} (as `rap library find --json`)", "LibraryFind"),
                (404, "no such concept", "")], auth: true }),
         get(library::find)),
        (op("get", "/v1/library/photos/{id}/thumbnail", Doc { summary: "A small JPEG of a library photo (query: box drawn as a frame, size)",
            tag: "library", body: None,
            responses: &[(200, "the thumbnail", "binary"), (404, "no such photo in this tenant's library", "")], auth: true }),
         get(library::thumbnail)),
        (op("post", "/v1/library/scan", Doc { summary: "Index a folder of the server's disk into the library (admin only)",
            tag: "library", body: Some(Body::Json("LibraryScan")),
            responses: &[(200, "what was indexed (as `rap library add --json`)", "ScanReport"),
                (403, "not an admin, or the folder is outside the server's library_dirs", "")], auth: true }),
         post(library::scan)),
        (op("get", "/v1/models", Doc { summary: "The model behind chat completions (OpenAI-compatible)", tag: "openai",
            body: None, responses: &[(200, "the model list", "ModelList")], auth: true }),
         get(openai::models)),
        (op("post", "/v1/chat/completions", Doc { summary: "Personalized chat completion (OpenAI-compatible; `stream` for server-sent events)",
            tag: "openai", body: Some(Body::Json("ChatCompletionRequest")),
            responses: &[(200, "the answer, with the concepts used in `rap` and the x-rap-concepts header", "ChatCompletion"),
                (503, "busy (see Retry-After), or the model is not installed", "")], auth: true }),
         post(openai::chat_completions)),
    ]
}

/// The OpenAPI document of this server.
pub fn openapi() -> serde_json::Value {
    let ops: Vec<Op> = routes().into_iter().map(|(op, _)| op).collect();
    crate::openapi::document(&ops)
}

/// Whether a request does model work (and so gets the longer time limit).
fn is_model_work(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path == "/v1/concepts"
            || path == "/v1/retrieve"
            || path == "/v1/chat/completions"
            || path == "/v1/library/scan"
            || (path.starts_with("/v1/concepts/") && path.ends_with("/images")))
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Middleware: a request id, a time limit, and one log line per request.
async fn log_and_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let limit = if is_model_work(&method, &path) {
        state.config().model_timeout
    } else {
        state.config().request_timeout
    };
    let start = Instant::now();
    let mut res = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    };
    let status = res.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(id, %method, path, status, ms, "request");
    } else {
        tracing::info!(id, %method, path, status, ms, "request");
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The whole application: the API (behind authentication), `/openapi.json`, the page.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for (op, handler) in routes() {
        api = api.route(op.path, handler);
    }
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    let doc = openapi();
    Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.clone()) }),
        )
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .merge(web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_and_limit,
        ))
        .with_state(state)
}

/// Refuses to serve on a non-loopback address without API keys (anyone who can reach it
/// could read and change the memory), unless the operator insists.
pub fn check_bind(
    addr: SocketAddr,
    keys_required: bool,
    insecure_no_auth: bool,
) -> Result<(), String> {
    if addr.ip().is_loopback() || keys_required || insecure_no_auth {
        return Ok(());
    }
    Err(format!(
        "refusing to serve on {addr} without API keys: anyone who reaches it could read and change the memory. \
         Create a key with `rap keys create --tenant NAME`, bind to 127.0.0.1, or pass --insecure-no-auth"
    ))
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
///
/// The accept loop is hyper's own rather than `axum::serve`, which sets no timer, so hyper's
/// header read timeout never fired and a client sending its headers a byte at a time held a
/// connection forever. Here a connection that has not sent a whole request head within
/// `header_read_timeout` is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let header_read_timeout = state.config().header_read_timeout;
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_without_keys_is_refused() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_bind(lo, false, false).is_ok());
        assert!(check_bind(lo6, false, false).is_ok());
        let e = check_bind(any, false, false).unwrap_err();
        assert!(
            e.contains("--insecure-no-auth") && e.contains("rap keys create"),
            "{e}"
        );
        assert!(check_bind(any, true, false).is_ok());
        assert!(check_bind(any, false, true).is_ok());
    }

    #[test]
    fn the_document_lists_every_route_with_its_methods() {
        let doc = openapi();
        for (op, _) in routes() {
            assert!(
                doc["paths"][op.path][op.method].is_object(),
                "{} {}",
                op.method,
                op.path
            );
        }
        assert_eq!(doc["paths"].as_object().unwrap().len(), 13);
        assert!(
            doc["paths"]["/v1/concepts"]["post"]["requestBody"]["content"]["multipart/form-data"]
                .is_object()
        );
        assert!(doc["paths"]["/v1/concepts"]["post"]["responses"]["201"].is_object());
    }
}
