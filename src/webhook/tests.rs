//! The endpoint's refusals, without an API server: each bad call is answered with the right
//! status and a FAILURE body naming what was wrong, and none of them reaches the API server.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kube::Client;
use tower::ServiceExt;

use super::auth::{HeaderScheme, SecretFile};
use super::{DEPROVISION_PATH, WebhookState, router};

const SECRET: &str = "unit-test-secret-0123456789";

fn app() -> (
    axum::Router,
    tower_test::mock::Handle<Request<kube::client::Body>, http::Response<kube::client::Body>>,
    tempfile::TempDir,
) {
    let (svc, handle) = tower_test::mock::pair::<Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    (router(Arc::new(state_with(Client::new(svc, "default"), &path))), handle, dir)
}

/// The endpoint's state for tests: `client`, the secret in file `secret`, a 2 s deadline.
fn state_with(client: Client, secret: &std::path::Path) -> WebhookState {
    WebhookState {
        client,
        secret: SecretFile::load(secret).unwrap(),
        header: HeaderScheme::new(header::AUTHORIZATION),
        deadline: Duration::from_secs(2),
        body_limit: 1024,
        metrics: crate::metrics::Metrics::new(),
        in_flight: tokio::sync::Semaphore::new(8),
        unauthenticated: crate::webhook::guard::PerSource::new(1000),
        recorded: crate::webhook::guard::PerMinute::new(1000),
        controller_alive: std::sync::atomic::AtomicBool::new(true),
        finished: crate::finished::Finished::new(),
        handoff: Default::default(),
        view: None,
    }
}

async fn call(
    app: axum::Router,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    call_at(app, DEPROVISION_PATH, auth, content_type, body).await
}

async fn call_at(
    app: axum::Router,
    path_and_query: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::post(path_and_query);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let resp = app.oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn bad_calls_are_refused_before_any_api_call() {
    let good = format!("Bearer {SECRET}");
    let json = Some("application/json");
    let valid = br#"{"application":{"app_id":"a"},"target_user":{"email":"t@x.io"}}"#.to_vec();
    // (Authorization, Content-Type, body, expected status, words the message must contain)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (None, json, valid.clone(), StatusCode::UNAUTHORIZED, "missing credentials"),
        (Some("Bearer nope-nope-nope-nope-nope"), json, valid.clone(), StatusCode::UNAUTHORIZED, "wrong credentials"),
        (Some(&good), None, valid.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json"),
        (Some(&good), Some("text/plain"), valid.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json"),
        (Some(&good), json, vec![b'x'; 2048], StatusCode::PAYLOAD_TOO_LARGE, "1024 byte limit"),
        (Some(&good), json, b"{".to_vec(), StatusCode::BAD_REQUEST, "malformed JSON"),
        (
            Some(&good),
            json,
            br#"{"application":{"app_id":"a"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "no usable target user email",
        ),
        (
            Some(&good),
            json,
            br#"{"target_user":{"email":"t@x.io"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "no application.app_id",
        ),
    ];
    let (app, mut handle, _dir) = app();
    for (auth, ct, body, want, words) in cases {
        let (status, answer) = call(app.clone(), auth, ct, body).await;
        assert_eq!(status, want, "{answer}");
        assert_eq!(answer["response"], "FAILURE");
        assert!(answer["msg"].as_str().unwrap().contains(words), "{answer} should say {words:?}");
        assert!(!answer["msg"].as_str().unwrap().contains(SECRET));
    }
    drop(app);
    assert!(handle.next_request().await.is_none(), "no bad call reached the API server");
}

#[tokio::test]
async fn application_json_with_parameters_and_json_suffixes_are_accepted() {
    for ct in ["application/json; charset=utf-8", "application/vnd.lumos+json"] {
        let (app, mut handle, _dir) = app();
        let body = br#"{"application":{"app_id":"a"},"target_user":{"email":"t@x.io"}}"#.to_vec();
        let server = tokio::spawn(async move {
            // The first API call is the duplicate lookup: answer it with an error and stop.
            let (req, send) = handle.next_request().await.expect("the valid call reaches the API server");
            assert!(req.uri().path().ends_with("/deprovisionrequests"), "{}", req.uri());
            send.send_error(std::io::Error::other("test: API server unreachable"));
        });
        let (status, answer) = call(app, Some(&format!("Bearer {SECRET}")), Some(ct), body).await;
        server.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["response"], "FAILURE");
        assert!(answer["msg"].as_str().unwrap().contains("Could not record the request"), "{answer}");
    }
}

#[tokio::test]
async fn unknown_or_misspelt_query_parameters_are_refused() {
    let (app, mut handle, _dir) = app();
    let valid = br#"{"application":{"app_id":"a"},"target_user":{"email":"t@x.io"}}"#.to_vec();
    let auth = format!("Bearer {SECRET}");
    for query in ["?dry_run=true", "?dryrun=true", "?dryRun=yes", "?dryRun=true&force=1"] {
        let path = format!("{DEPROVISION_PATH}{query}");
        let (status, answer) = call_at(app.clone(), &path, Some(&auth), Some("application/json"), valid.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(answer["msg"].as_str().unwrap().contains("only dryRun=true|false is accepted"), "{answer}");
    }
    drop(app);
    assert!(handle.next_request().await.is_none(), "a misspelt dry run never reaches the API server");
}

/// Near the deadline, a call whose request the (live) watch of unfinished requests shows still
/// under way is answered from it, without reading the record, and is still woken if the request
/// ends in the last moments; when the watch delivered nothing about it, the record is read.
#[tokio::test]
async fn near_the_deadline_an_unfinished_request_is_told_from_a_live_watch_else_read() {
    use crate::crd::{DeprovisionRequestStatus, Phase};
    use kube::runtime::watcher::Event;
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Watch {
        /// Delivers nothing about the request.
        Silent,
        /// Delivers it under way, and other requests' changes every 200 ms.
        Live,
        /// As `Live`, and the request ends 1.8 s after the call (its deadline is 2 s).
        LiveThenEnds,
    }
    for watch in [Watch::Silent, Watch::Live, Watch::LiveThenEnds] {
        let (svc, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let state = state_with(Client::new(svc, "default"), &path);
        let finished = state.finished.clone();
        let app = router(Arc::new(state));
        let started = tokio::time::Instant::now();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("the create");
            assert_eq!(req.method(), http::Method::POST, "{}", req.uri());
            let body = axum::body::to_bytes(axum::body::Body::new(req.into_body()), 1 << 20).await.unwrap();
            let mut obj: crate::crd::DeprovisionRequest = serde_json::from_slice(&body).unwrap();
            obj.metadata.uid = Some("uid-1".into());
            let uid = obj.metadata.uid.clone().unwrap();
            let created = serde_json::to_vec(&obj).unwrap();
            send.send_response(http::Response::builder().status(201).body(created.into()).unwrap());
            obj.status = Some(DeprovisionRequestStatus { phase: Phase::InProgress, ..Default::default() });
            let mut delivering = None;
            if watch != Watch::Silent {
                while !finished.is_awaited(&uid) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let deliver =
                    |ev: Event<_>| crate::view::requests::deliver(&finished, Ok(&ev), std::time::Instant::now());
                deliver(Event::InitDone);
                deliver(Event::Apply(obj.clone()));
                if watch == Watch::LiveThenEnds {
                    let finished = finished.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(started + Duration::from_millis(1800)).await;
                        let ended = DeprovisionRequestStatus { phase: Phase::Succeeded, ..Default::default() };
                        finished.done(&uid, Some(Box::new(ended)));
                    });
                }
                let (finished, other) = (finished.clone(), obj.clone());
                delivering = Some(tokio::spawn(async move {
                    for i in 0.. {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let mut other = other.clone();
                        other.metadata.name = Some(format!("other-{i}"));
                        other.metadata.uid = Some(format!("uid-other-{i}"));
                        crate::view::requests::deliver(&finished, Ok(&Event::Apply(other)), std::time::Instant::now());
                    }
                }));
            }
            // Anything else is the record's read, answered with the record still under way.
            let mut reads = 0;
            while let Some((req, send)) = handle.next_request().await {
                assert_eq!(req.method(), http::Method::GET, "{}", req.uri());
                reads += 1;
                send.send_response(http::Response::builder().body(serde_json::to_vec(&obj).unwrap().into()).unwrap());
            }
            delivering.inspect(|d| d.abort());
            reads
        });
        let body = br#"{"application":{"app_id":"a"},"target_user":{"email":"t@x.io"}}"#.to_vec();
        let (status, answer) = call(app, Some(&format!("Bearer {SECRET}")), Some("application/json"), body).await;
        assert_eq!(status, StatusCode::OK);
        let reads = server.await.unwrap();
        let msg = answer["msg"].as_str().unwrap();
        match watch {
            Watch::LiveThenEnds => assert_eq!(answer["response"], "SUCCESS", "{watch:?}: {answer}"),
            _ => {
                assert_eq!(answer["response"], "FAILURE", "{watch:?}: {answer}");
                assert!(msg.contains("Still in progress") && msg.contains("deprovisionrequest/lumos-"), "{answer}");
            }
        }
        assert_eq!(reads, usize::from(watch == Watch::Silent), "{watch:?}: reads of the record");
    }
}
