//! The audit endpoint: `POST /audit` on a listener of its own (`--audit-listen`), served by the
//! bounded server of the webhook ([`crate::webhook::server`]). It takes the API server's audit
//! webhook batches (`application/json`: an `EventList`, an `Event` or an array) and log shippers'
//! lines (`application/x-ndjson`), and answers 200 `{"accepted": N, "ignored": M}` only once the
//! sightings are stored ([`super::flush`]); the API server's batch backend sends again what is
//! not acknowledged.
//!
//! Refusals, in this order: 401 without the bearer token (an empty body), 503 past the calls in
//! flight, 415 another content type, 413 a body over `--audit-max-body`, 400 a malformed body
//! (naming where), 429 past `--audit-max-events-per-second` (with Retry-After), 503 when the
//! store fails (with Retry-After).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::event::parse_batch;
use super::flush::{Flusher, StoreSettings, system_clock};
use crate::metrics::{CodeLabels, EventLabels, Metrics};
use crate::webhook::auth::{HeaderScheme, SecretError, SecretFile};
use crate::webhook::server::{self, ServerLimits};

/// The endpoint's path.
pub const PATH: &str = "/audit";

/// Batches handled at once (each holds its body, up to `--audit-max-body`); more get 503.
pub const IN_FLIGHT: usize = 16;

/// What the endpoint is told by the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The bearer token's file (one per line; two during a rotation), re-read when it changes.
    pub token_file: PathBuf,
    /// Largest accepted body, in bytes.
    pub max_body: usize,
    /// Events accepted per second (a second's worth may come at once).
    pub max_events_per_second: u32,
    /// The serving certificate chain and key (PEM files), when it serves https: the API
    /// server's webhook backend sends its token only to an https URL.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where the sightings are stored.
    pub store: StoreSettings,
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The token file is unusable.
    #[error("--audit-token-file: {0}")]
    Token(#[from] SecretError),
    /// The audit token is also the webhook's secret: whoever holds the API server's audit
    /// kubeconfig could record removals.
    #[error("--audit-token-file holds the webhook's secret: give the audit endpoint a token of its own")]
    SharedToken,
    /// The certificate or key cannot be used.
    #[error("--audit-tls-cert-file / --audit-tls-key-file: {0}")]
    Tls(String),
    /// The address cannot be bound.
    #[error("binding --audit-listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What every call shares.
pub struct AuditState {
    token: SecretFile,
    max_body: usize,
    rate: Mutex<Rate>,
    in_flight: Semaphore,
    flusher: Flusher,
    metrics: Arc<Metrics>,
}

impl AuditState {
    /// The state of an endpoint storing through `flusher`.
    pub fn new(
        token: SecretFile,
        max_body: usize,
        max_events_per_second: u32,
        flusher: Flusher,
        metrics: Arc<Metrics>,
    ) -> Self {
        AuditState {
            token,
            max_body,
            rate: Mutex::new(Rate::new(max_events_per_second, Instant::now())),
            in_flight: Semaphore::new(IN_FLIGHT),
            flusher,
            metrics,
        }
    }
}

/// Starts the endpoint: the store's writer, then the server on `settings.listen` until `stop`
/// (then drained; the writer stores what was taken before it ends). The task ends when both did.
pub async fn start(
    settings: Settings,
    client: Client,
    metrics: Arc<Metrics>,
    limits: ServerLimits,
    webhook_secret: &SecretFile,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let token = SecretFile::load(&settings.token_file)?;
    if token.shares_a_secret_with(webhook_secret) {
        return Err(StartError::SharedToken);
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind { addr: settings.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: settings.listen, source })?;
    let tls = settings
        .tls
        .as_ref()
        .map(|(cert, key)| super::tls::acceptor(cert, key))
        .transpose()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    // Recording begins at the first stored batch, not here: nothing is dated from the start.
    let (flusher, writer) = Flusher::start(client, settings.store.clone(), metrics.clone(), system_clock());
    let state = Arc::new(AuditState::new(token, settings.max_body, settings.max_events_per_second, flusher, metrics));
    tracing::info!(%addr, path = PATH, https = tls.is_some(), namespace = %settings.store.namespace, prefix = %settings.store.prefix, "audit endpoint listening");
    Ok(tokio::spawn(async move {
        match tls {
            Some(tls) => server::serve_tls(listener, router(state), limits, stop, tls).await,
            None => server::serve(listener, router(state), limits, stop).await,
        }
        // The router (and with it the last handle of the writer) is gone: the writer ends once
        // it has stored what it took.
        let _ = writer.await;
    }))
}

/// `POST /audit`.
pub fn router(state: Arc<AuditState>) -> Router {
    Router::new().route(PATH, post(receive)).with_state(state)
}

async fn receive(State(s): State<Arc<AuditState>>, req: Request) -> Response {
    let (code, response, events) = answer(&s, req).await;
    s.metrics.activity_batches.get_or_create(&CodeLabels { code: code.as_u16() }).inc();
    for (outcome, n) in events {
        if n > 0 {
            s.metrics.activity_events.get_or_create(&EventLabels { outcome }).inc_by(n as u64);
        }
    }
    response
}

/// The answer, its code, and the events by outcome.
async fn answer(s: &AuditState, req: Request) -> (StatusCode, Response, Vec<(&'static str, usize)>) {
    let bearer = HeaderScheme::new(header::AUTHORIZATION);
    if !bearer.extract(req.headers()).is_some_and(|t| s.token.verify(t)) {
        let r = (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
        return (StatusCode::UNAUTHORIZED, r, vec![]);
    }
    let Ok(_slot) = s.in_flight.try_acquire() else {
        let code = StatusCode::SERVICE_UNAVAILABLE;
        return (code, refusal(code, "too many audit batches in flight", Some(1)), vec![]);
    };
    let ndjson = match content_type(req.headers()) {
        Some(ContentType::Json) => false,
        Some(ContentType::Ndjson) => true,
        None => {
            let code = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return (code, refusal(code, "send application/json or application/x-ndjson", None), vec![]);
        }
    };
    let too_large = || {
        let code = StatusCode::PAYLOAD_TOO_LARGE;
        (code, refusal(code, &format!("the body is over {} bytes", s.max_body), None), vec![])
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body as u64) {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), s.max_body).await else {
        return too_large();
    };
    let events = match parse_batch(&body, ndjson) {
        Ok(events) => events,
        Err(e) => {
            let code = StatusCode::BAD_REQUEST;
            return (code, refusal(code, &e.to_string(), None), vec![]);
        }
    };
    drop(body);
    let total = events.len();
    let wait = s.rate.lock().unwrap_or_else(|p| p.into_inner()).take(total, Instant::now());
    if let Err(wait) = wait {
        let code = StatusCode::TOO_MANY_REQUESTS;
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return (code, refusal(code, "over --audit-max-events-per-second", Some(secs)), vec![("refused", total)]);
    }
    let mut sightings = Vec::new();
    let mut ignored = 0;
    for e in &events {
        let seen = e.sightings();
        ignored += usize::from(seen.is_empty());
        sightings.extend(seen);
    }
    drop(events);
    let accepted = total - ignored;
    match s.flusher.received(sightings).await {
        Ok(()) => {
            let body = serde_json::json!({ "accepted": accepted, "ignored": ignored });
            (StatusCode::OK, axum::Json(body).into_response(), vec![("accepted", accepted), ("ignored", ignored)])
        }
        Err(e) => {
            let code = StatusCode::SERVICE_UNAVAILABLE;
            let text = format!("not stored, send again: {}", crate::text::clip_to(&e.to_string(), 300));
            (code, refusal(code, &text, Some(1)), vec![("unstored", accepted), ("ignored", ignored)])
        }
    }
}

/// A refusal: `{"error": why}`, with Retry-After when given.
fn refusal(code: StatusCode, why: &str, retry_after: Option<u64>) -> Response {
    let mut r = (code, axum::Json(serde_json::json!({ "error": why }))).into_response();
    if let Some(secs) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// The accepted content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/json`: an EventList, an Event or an array of Events.
    Json,
    /// `application/x-ndjson` (or `application/jsonl`): one Event per line.
    Ndjson,
}

/// The body's content type, when accepted (parameters such as `charset` aside).
pub fn content_type(headers: &HeaderMap) -> Option<ContentType> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(ContentType::Json),
        "application/x-ndjson" | "application/jsonl" => Some(ContentType::Ndjson),
        _ => None,
    }
}

/// Events per second, as a bucket holding a second's worth (pure but for the caller's clock):
/// a batch is taken while the bucket is not empty, and may take it below zero (a batch larger
/// than a second's worth is accepted from a full bucket, then the next ones wait).
#[derive(Debug, Clone)]
pub struct Rate {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Rate {
    /// A full bucket of `per_second` (at least 1).
    pub fn new(per_second: u32, now: Instant) -> Rate {
        let per_second = f64::from(per_second.max(1));
        Rate { per_second, tokens: per_second, at: now }
    }

    /// Takes `n` events at `now`, or says how long until the bucket is no longer empty.
    pub fn take(&mut self, n: usize, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        self.at = now;
        if self.tokens <= 0.0 {
            return Err(Duration::from_secs_f64((-self.tokens + 1.0) / self.per_second));
        }
        self.tokens -= n as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
