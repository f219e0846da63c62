//! `ApiError`: the one error type of Sesame's JSON boundary (OAuth endpoints,
//! OTP API, admin API). `Display` is the RFC 6749 §5.2 code that goes on the
//! wire; internal causes go to the log, never into a response.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid_request")]
    InvalidRequest(String),
    #[error("invalid_request")]
    PayloadTooLarge(usize),
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_grant")]
    InvalidGrant(String),
    /// At the token endpoint (RFC 6749 §5.2): 400.
    #[error("unauthorized_client")]
    UnauthorizedClient(String),
    /// On the OTP and admin APIs: 403.
    #[error("unauthorized_client")]
    ForbiddenClient(String),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType(String),
    #[error("invalid_scope")]
    InvalidScope(String),
    /// RFC 8707 §2: a `resource` the client may not ask for.
    #[error("invalid_target")]
    InvalidTarget(String),
    /// RFC 6750 §3.1: 401 with a `Bearer` challenge.
    #[error("invalid_token")]
    InvalidToken(String),
    #[error("insufficient_scope")]
    InsufficientScope(String),
    #[error("invalid_code")]
    InvalidCode(String),
    #[error("too_many_requests")]
    TooManyRequests { retry_after: u64, description: String },
    #[error("delivery_failed")]
    DeliveryFailed,
    /// RFC 6749 §4.1.2.1's `temporarily_unavailable`: 503, try again.
    #[error("temporarily_unavailable")]
    Busy,
    /// 503 `temporarily_unavailable` saying what could not be done.
    #[error("temporarily_unavailable")]
    Unavailable(String),
    #[error("conflict")]
    Conflict(String),
    /// RFC 7591 §3.2.2.
    #[error("invalid_client_metadata")]
    InvalidClientMetadata(String),
    #[error("not_found")]
    NotFound(String),
    #[error("method_not_allowed")]
    MethodNotAllowed,
    #[error("server_error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn description(&self) -> String {
        use ApiError::*;
        match self {
            InvalidRequest(d)
            | InvalidGrant(d)
            | UnauthorizedClient(d)
            | ForbiddenClient(d)
            | UnsupportedGrantType(d)
            | InvalidScope(d)
            | InvalidTarget(d)
            | InvalidToken(d)
            | InsufficientScope(d)
            | InvalidCode(d)
            | Conflict(d)
            | Unavailable(d)
            | NotFound(d)
            | InvalidClientMetadata(d) => d.clone(),
            TooManyRequests { description, .. } => description.clone(),
            PayloadTooLarge(limit) => format!("request body is larger than {limit} bytes"),
            InvalidClient => "client authentication failed".into(),
            DeliveryFailed => "the code could not be delivered; try again later".into(),
            Busy => "the server is busy; try again shortly".into(),
            MethodNotAllowed => "method not allowed on this path".into(),
            Internal(_) => "an internal error occurred".into(),
        }
    }
}

/// Shorthand for `ApiError::InvalidRequest(format!(…))`.
pub fn invalid_request(description: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(description.into())
}

impl From<crate::store::DbError> for ApiError {
    fn from(e: crate::store::DbError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidRequest(_)
            | InvalidGrant(_)
            | UnauthorizedClient(_)
            | UnsupportedGrantType(_)
            | InvalidScope(_)
            | InvalidTarget(_)
            | InvalidCode(_)
            | InvalidClientMetadata(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidClient | InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ForbiddenClient(_) | InsufficientScope(_) => StatusCode::FORBIDDEN,
            TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            DeliveryFailed | Busy | Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Conflict(_) => StatusCode::CONFLICT,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Internal(cause) if crate::store::is_unavailable(cause) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            if crate::store::is_unavailable(cause) {
                // The database is down or unreachable: a 503 the client may retry, not a 500.
                tracing::warn!(error = format!("{cause:#}"), "database unavailable");
                return ApiError::Unavailable("the database is unreachable; try again shortly".into()).error_response();
            }
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            ApiError::InvalidClient => {
                res.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="sesame""#));
            }
            ApiError::InvalidToken(_) | ApiError::InsufficientScope(_) => {
                let challenge = format!(r#"Bearer realm="sesame", error="{self}""#);
                res.insert_header((header::WWW_AUTHENTICATE, challenge));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::Busy | ApiError::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        res.json(json!({ "error": self.to_string(), "error_description": self.description() }))
    }
}
