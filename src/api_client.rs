//! The Kubernetes client: kube's, but speaking HTTP/2 to the API server when it offers it (TLS
//! ALPN), as client-go does.
//!
//! kube's own client speaks HTTP/1.1 only, one request per connection at a time. Its pool opens a
//! new connection whenever every open one is busy, and closes one whenever a request is dropped
//! before its answer (a call's deadline passed). In a burst of 1,000 calls the operator opened
//! about 700 connections to the API server, and the TLS handshakes alone took 6 % of the API
//! server's CPU. Over HTTP/2 every request shares one connection, and a dropped request only
//! resets its own stream.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// How often an idle HTTP/2 connection is checked with a ping, and how long the answer may take
/// before the connection is dropped (client-go's `ReadIdleTimeout` and `PingTimeout`).
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig's TLS or credentials could not be used.
    #[error("building the Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig's `tls-server-name` is not a valid name.
    #[error("building the Kubernetes client: tls-server-name {0:?} is not a valid server name")]
    ServerName(String),
}

/// A client for `config`: HTTP/2 where the API server offers it, else HTTP/1.1. A kubeconfig that
/// names a proxy, or `DISABLE_HTTP2` set in the environment (as client-go reads it), gets kube's
/// own client (HTTP/1.1).
pub fn build(config: Config) -> Result<Client, ClientError> {
    if config.proxy_url.is_some() || std::env::var_os("DISABLE_HTTP2").is_some_and(|v| !v.is_empty()) {
        return Ok(Client::try_from(config)?);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config.rustls_client_config()?).https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => {
            let name = name.clone().try_into().map_err(|_| ClientError::ServerName(name.clone()))?;
            https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => https,
    };
    let https = https.enable_http1().enable_http2().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_EVERY)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(https);
    // The same layers as kube's own client, in the same order.
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| RetryLayer::new(RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}
