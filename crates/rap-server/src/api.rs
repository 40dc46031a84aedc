//! The REST API over the memory: concepts, their images, and retrieval.
//!
//! Uploads are `multipart/form-data`; every image is checked (decodes completely, within the
//! pixel limit) before anything is written, and each change is one store transaction, so a
//! bad request leaves the memory as it was. Work that decodes or embeds images runs on the
//! worker pool; plain reads and writes run on tokio's blocking threads.

use crate::auth::RequestTenant;
use crate::{ApiError, AppState};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rap_core::{ImageId, NewConcept};
use rap_engine::{ConceptEdit, Engine, RetrieveOptions};
use serde::Deserialize;
use std::sync::Arc;

/// Runs quick blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = state.engine().clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|_| ApiError::internal("the request failed unexpectedly (see the server log)"))?
}

/// Runs model work (image decoding, embedding) on the bounded worker pool.
pub(crate) async fn on_pool<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine: Arc<Engine> = state.engine().clone();
    state.pool().run(move || f(&engine)).await?
}

/// An image id from a path: the 64 hex characters of its sha256, nothing else (so an id can
/// never be a path, a prefix search or another tenant's guessable handle).
pub fn parse_image_id(s: &str) -> Result<ImageId, ApiError> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "invalid image id {:?}: expected the 64 hex characters of its sha256",
            s.chars().take(80).collect::<String>()
        )));
    }
    Ok(ImageId(s.to_ascii_lowercase()))
}

/// The parts of a multipart form: text fields and image files, in order.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub texts: Vec<(String, String)>,
    /// (field position label, bytes)
    pub images: Vec<(String, Vec<u8>)>,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.texts
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

const MAX_TEXT_FIELD: usize = 64 * 1024;

/// Reads a whole multipart form; `text_fields` are the allowed text fields, `image` the
/// (repeatable) file field. Unknown fields are refused by name.
pub(crate) async fn read_form(
    multipart: Result<Multipart, MultipartRejection>,
    text_fields: &[&str],
) -> Result<Form, ApiError> {
    let mut multipart = multipart?;
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" {
            let label = match field.file_name() {
                Some(f) if !f.is_empty() => format!("image {} ({f})", form.images.len() + 1),
                _ => format!("image {}", form.images.len() + 1),
            };
            let bytes = field.bytes().await?;
            if bytes.is_empty() {
                return Err(ApiError::bad_request(format!("{label}: the file is empty")));
            }
            form.images.push((label, bytes.to_vec()));
        } else if text_fields.contains(&name.as_str()) {
            let bytes = field.bytes().await?;
            if bytes.len() > MAX_TEXT_FIELD {
                return Err(ApiError::bad_request(format!(
                    "field {name:?} is longer than {MAX_TEXT_FIELD} bytes"
                )));
            }
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::bad_request(format!("field {name:?} is not UTF-8 text")))?;
            form.texts.push((name, text));
        } else {
            let mut expected: Vec<&str> = text_fields.to_vec();
            expected.push("image");
            return Err(ApiError::bad_request(format!(
                "unknown field {:?} (expected {})",
                name.chars().take(80).collect::<String>(),
                expected.join(", ")
            )));
        }
    }
    Ok(form)
}

/// Checks uploaded images; errors name the image at fault.
fn check_images(
    engine: &Engine,
    images: Vec<(String, Vec<u8>)>,
) -> Result<Vec<rap_engine::ImageInput>, ApiError> {
    images
        .into_iter()
        .map(|(label, bytes)| {
            engine
                .image_from_bytes(bytes)
                .map_err(|e| ApiError::bad_request(format!("{label}: {e}")))
        })
        .collect()
}

/// `GET /v1/concepts`: every concept of the tenant, by name.
pub async fn list_concepts(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
) -> Result<Response, ApiError> {
    let concepts = blocking(&state, move |e| Ok(e.concepts(&tenant)?)).await?;
    Ok(Json(serde_json::json!({ "concepts": concepts })).into_response())
}

/// `POST /v1/concepts`: multipart `name`, `info`, `category`, `alias` (repeatable) and one
/// or more `image` files.
pub async fn create_concept(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = read_form(multipart, &["name", "info", "category", "alias"]).await?;
    let name = form
        .text("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("field \"name\" is required"))?
        .to_string();
    if form.images.is_empty() {
        return Err(ApiError::bad_request(
            "at least one reference photo is required in the field \"image\"",
        ));
    }
    let new = NewConcept {
        name,
        aliases: form
            .all("alias")
            .into_iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect(),
        category: form.text("category").unwrap_or_default().trim().to_string(),
        info: form.text("info").unwrap_or_default().trim().to_string(),
    };
    rap_core::normalize_name_key(&new.name)?;
    let images = form.images;
    let concept = on_pool(&state, move |e| {
        let images = check_images(e, images)?;
        Ok(e.add_concept(&tenant, &new, images)?)
    })
    .await?;
    let mut res = (StatusCode::CREATED, Json(&concept)).into_response();
    let location = format!("/v1/concepts/{}", encode_path(&concept.name));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Percent-encodes a path segment.
fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /v1/concepts/{name}`: by name or alias, any case.
pub async fn get_concept(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let concept = blocking(&state, move |e| Ok(e.concept(&tenant, &name)?)).await?;
    Ok(Json(concept).into_response())
}

/// The body of `PATCH /v1/concepts/{name}`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptPatch {
    /// A new name.
    pub name: Option<String>,
    pub info: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    pub add_aliases: Vec<String>,
    #[serde(default)]
    pub remove_aliases: Vec<String>,
}

/// `PATCH /v1/concepts/{name}`: JSON with any of `name`, `info`, `category`, `add_aliases`,
/// `remove_aliases`; one transaction.
pub async fn patch_concept(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(name): Path<String>,
    body: Result<Json<ConceptPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    let edit = ConceptEdit {
        rename: patch.name.map(|n| n.trim().to_string()),
        info: patch.info.map(|s| s.trim().to_string()),
        category: patch.category.map(|s| s.trim().to_string()),
        add_aliases: patch.add_aliases,
        remove_aliases: patch.remove_aliases,
        ..ConceptEdit::default()
    };
    let concept = blocking(&state, move |e| Ok(e.edit_concept(&tenant, &name, edit)?)).await?;
    Ok(Json(concept).into_response())
}

/// `DELETE /v1/concepts/{name}`: the concept, its keys and the images nothing else uses.
pub async fn delete_concept(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let concept = blocking(&state, move |e| Ok(e.remove_concept(&tenant, &name)?)).await?;
    Ok(Json(serde_json::json!({ "deleted": concept })).into_response())
}

/// `POST /v1/concepts/{name}/images`: multipart, one or more `image` files.
pub async fn add_images(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = read_form(multipart, &[]).await?;
    if form.images.is_empty() {
        return Err(ApiError::bad_request(
            "no image: send one or more files in the field \"image\"",
        ));
    }
    let images = form.images;
    let concept = on_pool(&state, move |e| {
        // Fail on an unknown concept before decoding anything.
        e.concept(&tenant, &name)?;
        let images = check_images(e, images)?;
        let edit = ConceptEdit {
            add_images: images,
            ..ConceptEdit::default()
        };
        Ok(e.edit_concept(&tenant, &name, edit)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(concept)).into_response())
}

/// `DELETE /v1/concepts/{name}/images/{image_id}`: a concept keeps at least one image.
pub async fn delete_image(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path((name, image_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_image_id(&image_id)?;
    let concept = blocking(&state, move |e| {
        let edit = ConceptEdit {
            remove_images: vec![id.0],
            ..ConceptEdit::default()
        };
        Ok(e.edit_concept(&tenant, &name, edit)?)
    })
    .await?;
    Ok(Json(concept).into_response())
}

/// `POST /v1/concepts/{name}/negatives`: multipart, one `image` ("that's not this concept")
/// and optionally `box` (`x1,y1,x2,y2` in the image's pixels, as a retrieval hit gives it):
/// the image, or that part of it, becomes a negative example of the concept, at once.
pub async fn add_negative(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = read_form(multipart, &["box"]).await?;
    let bbox = form
        .text("box")
        .map(|b| b.parse::<rap_core::BoundingBox>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("field \"box\": {e}")))?;
    let mut images = form.images;
    if images.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "send exactly one file in the field \"image\" (got {})",
            images.len()
        )));
    }
    let (label, bytes) = images.remove(0);
    let concept = on_pool(&state, move |e| {
        e.concept(&tenant, &name)?;
        let negative = e
            .negative_example(bytes, bbox.as_ref())
            .map_err(|err| ApiError::bad_request(format!("{label}: {err}")))?;
        let edit = ConceptEdit {
            add_negatives: vec![negative],
            ..ConceptEdit::default()
        };
        Ok(e.edit_concept(&tenant, &name, edit)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(concept)).into_response())
}

/// `DELETE /v1/concepts/{name}/negatives/{image_id}`.
pub async fn delete_negative(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path((name, image_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_image_id(&image_id)?;
    let concept = blocking(&state, move |e| {
        let edit = ConceptEdit {
            remove_negatives: vec![id.0],
            ..ConceptEdit::default()
        };
        Ok(e.edit_concept(&tenant, &name, edit)?)
    })
    .await?;
    Ok(Json(concept).into_response())
}

/// The MIME type of encoded image bytes, from their signature.
pub fn sniff_mime(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'B', b'M', ..] => "image/bmp",
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => "image/tiff",
        _ => "application/octet-stream",
    }
}

/// `GET /v1/images/{image_id}`: the stored bytes of one of the tenant's images.
pub async fn get_image(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    Path(image_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_image_id(&image_id)?;
    let bytes = blocking(&state, move |e| Ok(e.image_bytes(&tenant, &id)?)).await?;
    let mime = sniff_mime(&bytes);
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            // Content-addressed: an id's bytes never change.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /v1/retrieve`: multipart `image` (a file) and/or `text`, optional `top_k` and
/// `threshold`; the same hits as `rap retrieve --json`.
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = read_form(multipart, &["text", "top_k", "threshold", "margin"]).await?;
    if form.images.len() > 1 {
        return Err(ApiError::bad_request("send at most one query image"));
    }
    let image = form.images.pop().map(|(_, b)| b);
    let text = form.text("text").map(str::to_string);
    if image.is_none() && text.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "send an \"image\", a \"text\", or both",
        ));
    }
    let mut options: RetrieveOptions = state.config().retrieve.clone();
    if let Some(k) = form.text("top_k") {
        options.top_k = k
            .trim()
            .parse()
            .ok()
            .filter(|&k: &usize| (1..=100).contains(&k))
            .ok_or_else(|| {
                ApiError::bad_request(format!("top_k {k:?}: give a whole number from 1 to 100"))
            })?;
    }
    if let Some(t) = form.text("threshold") {
        let floor = t
            .trim()
            .parse()
            .ok()
            .filter(|t: &f32| t.is_finite())
            .ok_or_else(|| ApiError::bad_request(format!("threshold {t:?}: not a number")))?;
        // One floor for every concept, as `rap retrieve --threshold`.
        options = options.with_fixed_floor(floor);
    }
    if let Some(m) = form.text("margin") {
        options.margin = m
            .trim()
            .parse()
            .ok()
            .filter(|m: &f32| m.is_finite() && *m >= 0.0)
            .ok_or_else(|| {
                ApiError::bad_request(format!("margin {m:?}: give a number of 0 or more"))
            })?;
    }
    let retrieval = on_pool(&state, move |e| {
        e.retrieve(&tenant, image.as_deref(), text.as_deref(), &options)
            .map_err(|err| match err {
                rap_core::Error::InvalidInput(m) => ApiError::bad_request(format!("image: {m}")),
                other => other.into(),
            })
    })
    .await?;
    Ok(Json(serde_json::json!({ "hits": retrieval.hits })).into_response())
}
