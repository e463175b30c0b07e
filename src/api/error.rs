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
    /// Seconds for the `Retry-After` header of a 429 or 503.
    retry_after: Option<u64>,
    /// The limit that refused the request (429, 503), named in the answer and the metrics.
    limit: Option<&'static str>,
}

/// Marks a response refused by a limit, for the metrics.
#[derive(Clone, Copy)]
pub(super) struct Rejected(pub(super) &'static str);

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            limit: None,
        }
    }

    /// The limit that refused the request, if one did.
    pub(super) fn limit(&self) -> Option<&'static str> {
        self.limit
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
        // `--body-timeout-ms` passed before the whole body came.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(err) = cause {
            if err.is::<tower_http::timeout::TimeoutError>() {
                return Self::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive within the time limit",
                );
            }
            cause = err.source();
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
                limit: Some(overloaded.limit),
            },
            PlaygroundError::Limited(limited) => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: limited.to_string(),
                retry_after: Some(limited.retry_after.as_secs().max(1)),
                limit: Some(limited.limit.as_str()),
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
    /// The same answer as a `/live` message: the HTTP status it would have had, and for a 429
    /// or 503 the seconds to wait and the limit, so a client can treat both transports alike.
    pub(super) fn live_message(&self) -> serde_json::Value {
        let mut message = serde_json::json!({
            "type": "error",
            "error": self.message,
            "status": self.status.as_u16(),
        });
        if let Some(secs) = self.retry_after {
            message["retryAfter"] = secs.into();
        }
        if let Some(limit) = self.limit {
            message["limit"] = limit.into();
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
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(limit) = self.limit {
            body["limit"] = limit.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if let Some(limit) = self.limit {
            response.extensions_mut().insert(Rejected(limit));
        }
        response
    }
}
