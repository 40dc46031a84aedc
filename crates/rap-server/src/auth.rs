//! Authentication: with API keys configured (any active key in the memory), every `/v1`
//! request needs `Authorization: Bearer KEY` and acts as that key's tenant; without keys,
//! every request acts as the server's default tenant. The tenant reaches handlers as a
//! request extension, so no handler can pick another.

use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rap_core::Tenant;

/// The tenant a request acts as.
#[derive(Debug, Clone)]
pub struct RequestTenant(pub Tenant);

fn bearer(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, key) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "use the header `Authorization: Bearer KEY`",
        ));
    }
    Ok(Some(key.trim().to_string()))
}

/// Middleware: resolves the request's tenant or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let key = match bearer(&req) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let engine = state.engine().clone();
    let default = state.config().default_tenant.clone();
    let resolved = tokio::task::spawn_blocking(move || -> Result<Tenant, ApiError> {
        if !engine.api_keys_required()? {
            return Ok(default);
        }
        let key = key.ok_or_else(|| {
            ApiError::unauthorized(
                "this server requires an API key: send `Authorization: Bearer KEY` (keys are made with `rap keys create --tenant NAME`)",
            )
        })?;
        engine
            .authenticate(&key)?
            .ok_or_else(|| ApiError::unauthorized("invalid or revoked API key"))
    })
    .await;
    match resolved {
        Ok(Ok(tenant)) => {
            req.extensions_mut().insert(RequestTenant(tenant));
            next.run(req).await
        }
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::internal("authentication failed unexpectedly").into_response(),
    }
}
