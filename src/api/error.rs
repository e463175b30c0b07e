//! The one error type of every handler: a status and a JSON `{"error": message}` body.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::pipeline::PlaygroundError;
use crate::shares::ShareError;

/// An error answer: a status and a JSON `{"error": message}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for the `Retry-After` header of a 503.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Adds a `Retry-After` header of `secs` seconds.
    pub(super) fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub(super) fn from_rejection(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "the request body is over the size limit");
        }
        Self::new(status, rejection.body_text())
    }
}

impl From<PlaygroundError> for ApiError {
    fn from(err: PlaygroundError) -> Self {
        match err {
            PlaygroundError::BadRequest(message) => Self::bad_request(message),
            PlaygroundError::TooLarge(message) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            PlaygroundError::Overloaded(overloaded) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: overloaded.to_string(),
                retry_after: Some(overloaded.retry_after.as_secs().max(1)),
            },
            internal => {
                tracing::error!(error = %internal, "internal failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, internal.to_string())
            }
        }
    }
}

impl From<ShareError> for ApiError {
    fn from(err: ShareError) -> Self {
        let status = match err {
            ShareError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ShareError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, err.to_string())
    }
}

impl ApiError {
    /// The same answer as a `/live` message: the HTTP status it would have had, and for a 503
    /// the seconds to wait, so a client can treat both transports alike.
    pub(super) fn live_message(&self) -> serde_json::Value {
        let mut message = serde_json::json!({
            "type": "error",
            "error": self.message,
            "status": self.status.as_u16(),
        });
        if let Some(secs) = self.retry_after {
            message["retryAfter"] = secs.into();
        }
        message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}
