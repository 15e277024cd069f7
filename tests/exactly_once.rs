//! Calls that are not safe to repeat are sent at most once, with an idempotency key, and an
//! interrupted one is recorded as such instead of being sent again. Against the real control
//! plane and a recording HTTP server.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use deprovisioner::crd::{Outcome, Phase};
use deprovisioner::fixtures;
use serde_json::json;
use support::*;

/// What the recording server saw: (method, idempotency key).
type Seen = Arc<Mutex<Vec<(Method, Option<String>)>>>;

/// Serves `answers` in order (then 200s), recording every call.
async fn recording_server(answers: Vec<StatusCode>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let app = axum::Router::new().fallback(move |method: Method, headers: HeaderMap| {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
        log.lock().unwrap().push((method, key));
        let status = answers.lock().unwrap().next().unwrap_or(StatusCode::OK);
        async move { status }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/remove", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// A policy whose only action is an HTTP call; returns its app.
async fn http_policy(c: &kube::Client, method: &str, url: &str) -> String {
    let app = unique("once-app");
    policy(
        c,
        &unique("once"),
        json!({"application": {"appId": app}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"http": {"system": "crm", "method": method, "url": url, "maxAttempts": 3,
                "body": r#"{"email": "{{target_user.email}}"}"#}}]}),
    )
    .await;
    app
}

/// The one controller of this binary's shared control plane (a second would work the same
/// requests).
fn operator() -> &'static Operator {
    static OP: std::sync::OnceLock<Operator> = std::sync::OnceLock::new();
    OP.get_or_init(|| Operator::start(OperatorOpts::default().args(&["--leader-election=false"])))
}

#[tokio::test]
async fn a_post_answered_500_is_sent_once_with_its_idempotency_key() {
    let (url, seen) = recording_server(vec![StatusCode::INTERNAL_SERVER_ERROR]).await;
    let app = http_policy(&admin().await, "POST", &url).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "once@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let record = get_request(&admin().await, &request_name(&answer)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "a POST is never retried after a 5xx: {seen:?}");
    let uid = record.metadata.uid.clone().unwrap();
    assert_eq!(seen[0], (Method::POST, Some(format!("{uid}-0"))));
    let st = record.status.unwrap();
    assert_eq!((st.results[0].outcome, st.results[0].external.as_ref().unwrap().attempts), (Outcome::Failed, 1));
}

#[tokio::test]
async fn an_idempotent_get_answered_500_is_retried() {
    let (url, seen) = recording_server(vec![StatusCode::INTERNAL_SERVER_ERROR]).await;
    let app = http_policy(&admin().await, "GET", &url).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "get@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(seen.lock().unwrap().len(), 2, "retried once, then 200");
}

#[tokio::test]
async fn a_call_interrupted_before_its_outcome_was_recorded_is_never_sent_again() {
    let (url, seen) = recording_server(vec![]).await;
    // A control plane of its own: no other controller may touch this request.
    let cl = own_cluster();
    let c = cl.admin().await;
    let app = http_policy(&c, "POST", &url).await;
    let name = unique("interrupted");
    create_request(&c, &name, fixtures::request_spec(&app, "crash@lumos.com").build()).await;
    // This operator sends the call and dies before recording what came back.
    let opts = OperatorOpts::on(cl).args(&["--leader-election=false"]);
    let mut first = Operator::start(opts.env(&[("DEPROVISIONER_FAILPOINT_EXIT_AFTER_CALL", "1")]));
    let status = first.wait_exit(Duration::from_secs(30)).expect("the fault point stops the operator");
    assert_eq!(status.code(), Some(87), "{}", first.log_text());
    let marked = get_request(&c, &name).await.status.unwrap();
    assert_eq!(marked.attempting.as_ref().map(|a| a.id), Some(0), "the attempt was recorded before the call");
    assert!(marked.results.is_empty());
    // The next operator finds the marker: the outcome is unknown, and the call is not repeated.
    let _second = Operator::start(OperatorOpts::on(cl).args(&["--leader-election=false"]));
    let done = wait_terminal(&c, &name, Duration::from_secs(30)).await;
    let st = done.status.unwrap();
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(st.results[0].outcome, Outcome::Failed);
    assert!(
        st.results[0].message.contains("outcome unknown") && st.results[0].message.contains("check crm"),
        "{}",
        st.results[0].message
    );
    assert!(st.attempting.is_none());
    assert_eq!(seen.lock().unwrap().len(), 1, "sent exactly once across the crash");
}
