//! [`ApiError`]: every failure as `{"error": {"message": ..., "type": ...}}` with the status
//! code that fits (the shape OpenAI clients expect).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rap_core::Error;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (503 when busy).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The worker pool is full: try again shortly.
    pub fn busy() -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "the server is busy with other requests; retry in a moment",
            )
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "message": self.message, "type": self.kind } })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl From<Error> for ApiError {
    /// The status comes from the error's kind alone: the caller's fault (400, 404, 409), a model
    /// or service the operator must provide or that may come back (503), or a failure here (500).
    fn from(e: Error) -> Self {
        let message = e.report();
        match e {
            Error::InvalidInput(_) => ApiError::bad_request(message),
            // Over a configured limit (its name and value are in the message): the request,
            // or a part of it, is too large.
            Error::LimitExceeded { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", message)
            }
            Error::NotFound { .. } => ApiError::not_found(message),
            Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict_error", message),
            Error::NotInstalled { .. } | Error::Unavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                message,
            ),
            Error::Model(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model_error", message)
            }
            Error::Io { .. } | Error::Storage { .. } => {
                tracing::error!("{message}");
                ApiError::internal(message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request_too_large"
        } else {
            "invalid_request_error"
        };
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, kind, format!("request body: {}", r.body_text()))
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(r: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::new(
            r.status(),
            "invalid_request_error",
            format!("expected a multipart/form-data body: {}", r.body_text()),
        )
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        let status = e.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request_too_large"
        } else {
            "invalid_request_error"
        };
        ApiError::new(status, kind, format!("multipart body: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: Error) -> (u16, &'static str) {
        let a = ApiError::from(e);
        (a.status.as_u16(), a.kind)
    }

    #[test]
    fn the_status_comes_from_the_kind_never_from_the_words() {
        assert_eq!(
            answer(Error::invalid("bad")),
            (400, "invalid_request_error")
        );
        assert_eq!(
            answer(Error::not_found("concept", "bo")),
            (404, "not_found_error")
        );
        assert_eq!(
            answer(Error::Conflict("taken".into())),
            (409, "conflict_error")
        );
        let missing = Error::not_installed("default", "run `rap models install default`");
        assert_eq!(answer(missing), (503, "model_unavailable"));
        let down = Error::unavailable("cannot reach the generator at http://127.0.0.1:9");
        assert_eq!(answer(down), (503, "model_unavailable"));
        // A model failure that mentions installing is still a failure here, not a 503.
        let broken = Error::model("the installed weights do not load");
        assert_eq!(answer(broken), (500, "model_error"));
        assert_eq!(answer(Error::storage("disk full")), (500, "server_error"));
        // The message keeps the source's text once.
        let e = Error::storage_from("cannot open memory.sqlite", std::io::Error::other("gone"));
        assert_eq!(
            ApiError::from(e).message,
            "storage: cannot open memory.sqlite: gone"
        );
    }
}
