//! The photo library over HTTP: `GET /v1/library/find?concept=NAME` (the photos where a
//! concept is), `GET /v1/library/photos/{id}/thumbnail` (a small JPEG of one, with a hit's box
//! drawn; made on the fly from the photo on disk and cached in memory), and
//! `POST /v1/library/scan` (index a folder on the server's disk; admin only).
//!
//! A scan reads the server's own disk, so it is allowed only (1) for a folder inside one of
//! the operator's `library_dirs` ([`crate::ServerConfig::library_dirs`]; none: scans are
//! refused), and (2) to an admin: on a server without API keys (the operator's own, every
//! request is the default tenant), or a request whose tenant is one of
//! [`crate::ServerConfig::admin_tenants`].

use crate::api::{blocking, on_pool};
use crate::auth::RequestTenant;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rap_core::{BoundingBox, Tenant};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;

/// Thumbnails by key, and the keys in the order they were made (the oldest dropped first).
type Thumbnails = (
    HashMap<String, std::sync::Arc<Vec<u8>>>,
    std::collections::VecDeque<String>,
);

/// Thumbnails made since the server started, by (tenant, photo, size, box): at most
/// [`ThumbnailCache::MAX_ENTRIES`], the oldest dropped first.
#[derive(Default)]
pub struct ThumbnailCache {
    entries: Mutex<Thumbnails>,
}

impl ThumbnailCache {
    /// About 10-20 MB of 256-pixel JPEGs.
    const MAX_ENTRIES: usize = 1000;

    fn get(&self, key: &str) -> Option<std::sync::Arc<Vec<u8>>> {
        self.entries.lock().ok()?.0.get(key).cloned()
    }

    fn put(&self, key: String, bytes: std::sync::Arc<Vec<u8>>) {
        let Ok(mut guard) = self.entries.lock() else {
            return;
        };
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), bytes).is_none() {
            order.push_back(key);
        }
        while order.len() > Self::MAX_ENTRIES {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct FindQuery {
    concept: String,
    limit: Option<usize>,
}

/// `GET /v1/library/find?concept=NAME[&limit=N]`: as `rap library find --json`, each photo
/// with the URL of its thumbnail (box drawn).
pub async fn find(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Query(q): Query<FindQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let options = state.config().retrieve.clone();
    let limit = q.limit.unwrap_or(100).min(1000);
    let found = blocking(&state, move |e| {
        Ok(e.library_find(&tenant, &q.concept, limit, &options)?)
    })
    .await?;
    let mut out = serde_json::to_value(&found).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(photos) = out["photos"].as_array_mut() {
        for (json, hit) in photos.iter_mut().zip(&found.photos) {
            let b = hit.bbox;
            json["thumbnail"] = format!(
                "/v1/library/photos/{}/thumbnail?box={:.0},{:.0},{:.0},{:.0}",
                hit.photo, b.x1, b.y1, b.x2, b.y2
            )
            .into();
        }
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct ThumbnailQuery {
    #[serde(rename = "box")]
    bbox: Option<String>,
    size: Option<u32>,
}

/// `GET /v1/library/photos/{id}/thumbnail[?box=x1,y1,x2,y2][&size=N]`: a JPEG.
pub async fn thumbnail(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(id): Path<u64>,
    Query(q): Query<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let bbox: Option<BoundingBox> = match &q.bbox {
        Some(b) => Some(
            b.parse()
                .map_err(|e: rap_core::Error| ApiError::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    let size = q.size.unwrap_or(256).clamp(16, 1024);
    let key = format!(
        "{tenant}\n{id}\n{size}\n{}",
        q.bbox.as_deref().unwrap_or("")
    );
    let bytes = match state.thumbnails().get(&key) {
        Some(b) => b,
        None => {
            let made = on_pool(&state, move |e| {
                Ok(e.library_thumbnail(&tenant, id, size, bbox.as_ref())?)
            })
            .await?;
            let made = std::sync::Arc::new(made);
            state.thumbnails().put(key, made.clone());
            made
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes.as_ref().clone(),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// A folder on the server's disk, inside one of its `library_dirs`.
    folder: String,
}

/// Whether the request's tenant may scan the server's disk (see [the module](self)).
fn is_admin(state: &AppState, tenant: &Tenant, keys_required: bool) -> bool {
    !keys_required || state.config().admin_tenants.contains(tenant)
}

/// `POST /v1/library/scan` `{"folder": "..."}`: indexes it (new and changed photos) into the
/// tenant's library; the report as `rap library add --json`.
pub async fn scan(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Json(req): Json<ScanRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys_required = blocking(&state, |e| Ok(e.api_keys_required()?)).await?;
    if !is_admin(&state, &tenant, keys_required) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "scanning the server's disk is for admins (a server without API keys, or a tenant \
             in the server's admin_tenants)",
        ));
    }
    let folder = std::fs::canonicalize(&req.folder).map_err(|_| {
        ApiError::bad_request(format!("no such folder on the server: {:?}", req.folder))
    })?;
    let allowed = state
        .config()
        .library_dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .any(|d| folder.starts_with(&d));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!(
                "{:?} is not inside a folder the server may scan (its library_dirs)",
                req.folder
            ),
        ));
    }
    let options = state.config().retrieve.clone();
    let workers = state.config().workers.max(1);
    let report = on_pool(&state, move |e| {
        Ok(e.library_add(&tenant, &[folder], &options, workers, &mut |_| {})?)
    })
    .await?;
    Ok(Json(
        serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}
