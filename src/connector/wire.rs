//! The Lumos Connector API's envelopes, as its OpenAPI spec (connector-py's
//! `connector/spec/openapi.yaml`) writes them: a request `{request, page?, settings?, auth?, …}`,
//! a response `{response, page?}`, and `ErrorResponse` `{is_error: true, error: {…}}`.

use serde::Deserialize;
use serde_json::{Value, json};

/// The connector's `app_id`: what Lumos calls this app, and what every error names.
pub const APP_ID: &str = "kubernetes";

/// A request as it arrives. Fields the connector does not use (`auth`, `credentials`,
/// `settings`, `include_raw_data`, `rate_limit`) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The capability's own arguments (required by the spec for every capability but `info`).
    #[serde(default)]
    pub request: Option<Value>,
    /// Where a paged read continues, and how many items it wants.
    #[serde(default)]
    pub page: Option<PageIn>,
}

/// The `page` of a request.
#[derive(Debug, Default, Deserialize)]
pub struct PageIn {
    /// The token from the previous response.
    #[serde(default)]
    pub token: Option<String>,
    /// Items per page.
    #[serde(default)]
    pub size: Option<i64>,
}

/// The spec's `ConnectorErrorCode`s this connector answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is not JSON of the expected shape.
    BadRequest,
    /// A value is not one this connector gave out.
    InvalidValue,
    /// The account (or other object) does not exist.
    NotFound,
    /// The page token is not one this capability issued.
    InvalidPageToken,
    /// The capability is not implemented.
    UnsupportedOperation,
    /// The connector's identity may not do what the capability needs.
    PermissionDenied,
    /// The API server does not accept the connector's credentials.
    Unauthorized,
    /// The API server answered with an error.
    ServiceError,
    /// The API server could not be reached.
    ConnectionRejected,
    /// The API server (or the work) did not answer in time.
    RequestTimeout,
    /// The API server throttled the connector.
    RateLimit,
    /// The object changed meanwhile.
    Conflict,
    /// A bug or an unexpected state in the connector.
    InternalError,
}

impl ErrorCode {
    /// The code as the spec spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidPageToken => "invalid_page_token",
            ErrorCode::UnsupportedOperation => "unsupported_operation",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ServiceError => "service_error",
            ErrorCode::ConnectionRejected => "connection_rejected",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::RateLimit => "rate_limit",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InternalError => "internal_error",
        }
    }

    /// The `error_metadata` the SDK derives from the code (`connector_sdk_types.errors.metadata.
    /// build_metadata`): who is at fault, what the caller should do, whether retrying helps.
    fn metadata(self) -> Value {
        let (fault, category, retryable, throttled, refreshable) = match self {
            ErrorCode::BadRequest | ErrorCode::InvalidValue | ErrorCode::NotFound | ErrorCode::InvalidPageToken => {
                ("caller", "client", false, false, false)
            }
            ErrorCode::Conflict => ("caller", "client", false, false, false),
            ErrorCode::UnsupportedOperation => ("connector", "internal", false, false, false),
            ErrorCode::InternalError => ("connector", "internal", true, false, false),
            ErrorCode::PermissionDenied => ("upstream", "authorization", false, false, false),
            ErrorCode::Unauthorized => ("upstream", "authentication", false, false, true),
            ErrorCode::ServiceError | ErrorCode::RequestTimeout => ("upstream", "transient", true, false, false),
            ErrorCode::ConnectionRejected => ("infrastructure", "transient", true, false, false),
            ErrorCode::RateLimit => ("upstream", "transient", true, true, false),
        };
        json!({"fault": fault, "category": category, "retryable": retryable, "throttled": throttled, "refreshable": refreshable})
    }
}

/// An answer that is an `ErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ConnectorError {
    /// The spec's code.
    pub code: ErrorCode,
    /// What went wrong, fit to show a person.
    pub message: String,
}

impl ConnectorError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ConnectorError {
        ConnectorError { code, message: crate::text::clip(message.into()) }
    }

    /// The spec's `ErrorResponse` for this error, raised in `capability`.
    pub fn to_response(&self, capability: &str) -> Value {
        json!({
            "is_error": true,
            "error": {
                "message": self.message,
                "error_code": self.code.as_str(),
                "app_id": APP_ID,
                "raised_by": "ConnectorError",
                "raised_in": format!("deprovisioner.connector:{capability}"),
                "error_metadata": self.code.metadata(),
            }
        })
    }

    /// The error for a Kubernetes API failure while doing `what`.
    pub fn from_kube(what: &str, e: &kube::Error) -> ConnectorError {
        let code = match e {
            kube::Error::Api(s) => match s.code {
                401 => ErrorCode::Unauthorized,
                403 => ErrorCode::PermissionDenied,
                404 => ErrorCode::NotFound,
                409 => ErrorCode::Conflict,
                429 => ErrorCode::RateLimit,
                504 => ErrorCode::RequestTimeout,
                _ => ErrorCode::ServiceError,
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorCode::ConnectionRejected,
            _ => ErrorCode::ServiceError,
        };
        let detail = match e {
            kube::Error::Api(s) => format!("{} {}", s.code, s.message),
            other => other.to_string(),
        };
        ConnectorError::new(code, format!("{what}: the Kubernetes API server answered {detail}"))
    }
}

/// A successful answer: `{"response": …}`, with `page` when more items remain.
pub fn ok(response: Value, next: Option<(String, usize)>) -> Value {
    match next {
        Some((token, size)) => json!({"response": response, "page": {"token": token, "size": size}}),
        None => json!({"response": response}),
    }
}
