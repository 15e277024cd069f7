//! `POST /connectors/kubernetes/<capability>` on `deprovisioner run`: the same capabilities as
//! the CLI, behind the connector's own secrets ([`super::access`]: a read one, an unassign one;
//! never the webhook's), the webhook's per-source limit on failed attempts, its in-flight cap and
//! its body limit. Answers are 200 with the capability's JSON (an `ErrorResponse` included), as
//! the SDK's own HTTP server answers; a refused call gets 401, 403, 404 (no connector secret
//! configured), 408, 413, 429 or 503 with an `ErrorResponse`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json};

use super::access::{self, Access, Decision, Secrets};
use super::capability::{self, Connector};
use super::wire::{ConnectorError, ErrorCode};
use crate::webhook::{Refused, WebhookState, auth};

/// Where the capabilities are served: `POST {PATH}/<capability>` (the spec's
/// `/{connector_id}/<capability>` under `/connectors`).
pub const PATH: &str = "/connectors/kubernetes";

/// The longest a call may take before it is answered `request_timeout`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the endpoint needs: the connector's secrets, the webhook's guards and the connector.
pub struct ConnectorState {
    /// The connector's own secrets (none: the endpoint is not served).
    pub secrets: Secrets,
    /// Header scheme, limits (shared with the webhook); its secret never opens the connector.
    pub webhook: Arc<WebhookState>,
    /// The capabilities.
    pub connector: Connector,
}

/// The router serving every capability.
pub fn router(state: Arc<ConnectorState>) -> Router {
    Router::new().route(&format!("{PATH}/{{capability}}"), post(call)).with_state(state)
}

fn refusal(status: StatusCode, code: ErrorCode, capability: &str, message: &str) -> Response {
    (status, Json(ConnectorError::new(code, message).to_response(capability))).into_response()
}

async fn call(
    State(s): State<Arc<ConnectorState>>,
    Path(capability): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let w = &s.webhook;
    let peer = peer.map(|p| p.0.0.ip());
    let configured = s.secrets.configured();
    let opened = match configured {
        true => auth::check(&w.header, &w.unauthenticated, peer, &headers, |p| s.secrets.access(p, &w.secret)),
        false => Err(Refused::Missing),
    };
    let needs = access::needed(&capability);
    match access::decide(configured, opened, needs) {
        Decision::Serve => {}
        Decision::NotServed => {
            let m = format!(
                "the Lumos connector is not served here: no connector secret is configured ({} and/or {}; chart: connector.enabled=true)",
                Access::Read.flag(),
                Access::Unassign.flag()
            );
            return refusal(StatusCode::NOT_FOUND, ErrorCode::NotFound, &capability, &m);
        }
        Decision::Refused(refused) => {
            tracing::warn!(?peer, ?refused, "connector call without a connector secret rejected");
            if refused == Refused::TooMany {
                let m = "too many calls with missing or wrong credentials from this address; try again in a minute";
                return refusal(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimit, &capability, m);
            }
            let m = format!(
                "missing or wrong credentials: send one of the connector's secrets (not the webhook's) in the {} header",
                w.header.name()
            );
            return refusal(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, &capability, &m);
        }
        Decision::Forbidden { needs } => {
            tracing::warn!(?peer, %capability, "connector call with a read secret refused a capability that removes access");
            let m = format!(
                "this secret may only read the access map; {capability} needs the connector's unassign secret ({}; chart: {})",
                needs.flag(),
                needs.chart_value()
            );
            return refusal(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, &capability, &m);
        }
    }
    let Ok(_permit) = w.in_flight.try_acquire() else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::RateLimit, &capability, "too many calls in flight");
    };
    let bytes = match tokio::time::timeout(w.deadline, axum::body::to_bytes(body, w.body_limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            let m = format!("body is larger than the {} byte limit", w.body_limit);
            return refusal(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BadRequest, &capability, &m);
        }
        Err(_) => {
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                &capability,
                "the body did not arrive in time",
            );
        }
    };
    let answer = match tokio::time::timeout(CALL_TIMEOUT, capability::answer(&s.connector, &capability, &bytes)).await {
        Ok(v) => v,
        Err(_) => {
            ConnectorError::new(ErrorCode::RequestTimeout, format!("not answered within {}s", CALL_TIMEOUT.as_secs()))
                .to_response(&capability)
        }
    };
    (StatusCode::OK, Json(answer)).into_response()
}
