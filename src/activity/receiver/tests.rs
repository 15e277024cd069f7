//! The endpoint's answers, with the store behind it served by flush's in-memory API server.

use std::sync::Mutex;

use axum::body::Body;
use tower::ServiceExt;

use super::*;
use crate::activity::flush::tests::{Store, serve, settings};

const TOKEN: &str = "audit-token-0123456789abcdef";

const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"list","user":{"username":"alice","extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ab12"]}},"objectRef":{"resource":"pods","namespace":"default"},"stageTimestamp":"2026-12-07T08:00:00.123456Z"}"#;

const NOBODY: &str =
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get","user":{},"stageTimestamp":"2026-12-07T08:00:00Z"}"#;

struct App {
    router: Router,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

fn app(max_body: usize, per_second: u32) -> App {
    let (svc, handle) = tower_test::mock::pair();
    let store = Arc::new(Mutex::new(Store::default()));
    serve(handle, store.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    let metrics = Metrics::new();
    let clock = crate::activity::flush::tests::fixed("2026-12-07T07:00:00Z");
    let (flusher, _) = Flusher::start(Client::new(svc, "default"), settings(), metrics.clone(), clock);
    let state = AuditState::new(SecretFile::load(&path).unwrap(), max_body, per_second, flusher, metrics.clone());
    App { router: router(Arc::new(state)), store, metrics, _dir: dir }
}

async fn post(
    app: &App,
    auth: Option<&str>,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = axum::http::Request::post(PATH).header(header::CONTENT_TYPE, content_type);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app.router.clone().oneshot(req.body(Body::from(body.into())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn an_event_list_is_answered_once_stored() {
    let app = app(1 << 20, 5000);
    let list = format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{EVENT},{NOBODY}]}}"#);
    let (code, _, body) = post(&app, Some(&bearer()), "application/json", list).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"accepted": 1, "ignored": 1})
    );
    let st = app.store.lock().unwrap();
    let name =
        crate::activity::ledger::object_name("deprovisioner-activity", crate::activity::ledger::shard_of("User:alice"));
    let entry = st.shard(&name).expect("stored before the answer").accounts["User:alice"].clone();
    assert_eq!(entry.credential.as_deref(), Some("X509SHA256=ab12"));
    assert_eq!(entry.what.as_deref(), Some("list pods in default"));
    let text = app.metrics.encode();
    assert!(text.contains(r#"deprovisioner_activity_events_total{outcome="accepted"} 1"#), "{text}");
    assert!(text.contains(r#"deprovisioner_activity_batches_total{code="200"} 1"#), "{text}");
}

#[tokio::test]
async fn ndjson_lines_are_accepted() {
    let app = app(1 << 20, 5000);
    let (code, _, body) =
        post(&app, Some(&bearer()), "application/x-ndjson; charset=utf-8", format!("{EVENT}\n{NOBODY}\n")).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, r#"{"accepted":1,"ignored":1}"#));
}

#[tokio::test]
async fn refusals_say_what_was_wrong_and_store_nothing() {
    let app = app(2048, 5000);
    let (code, headers, body) = post(&app, None, "application/json", EVENT).await;
    assert_eq!((code, body.as_str()), (StatusCode::UNAUTHORIZED, ""), "nothing else said");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (code, _, body) = post(&app, Some("Bearer wrong-token-0123456789"), "application/json", EVENT).await;
    assert_eq!((code, body.as_str()), (StatusCode::UNAUTHORIZED, ""));
    let (code, _, body) = post(&app, Some(&format!("Basic {TOKEN}")), "application/json", EVENT).await;
    assert_eq!((code, body.as_str()), (StatusCode::UNAUTHORIZED, ""));
    let (code, _, body) = post(&app, Some(&bearer()), "text/plain", EVENT).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body.contains("application/x-ndjson"), "{body}");
    let (code, _, body) = post(&app, Some(&bearer()), "application/json", vec![b' '; 4096]).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("2048 bytes"), "{body}");
    let (code, _, body) = post(&app, Some(&bearer()), "application/x-ndjson", format!("{EVENT}\n{{not json\n")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("line 2 is not an audit.k8s.io/v1 Event"), "{body}");
    let (code, _, body) = post(&app, Some(&bearer()), "application/json", r#"{"kind":"Pod","apiVersion":"v1"}"#).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#"kind \"Pod\""#), "{body}");
    assert!(app.store.lock().unwrap().requests.is_empty(), "no refused batch reached the API server");
    let text = app.metrics.encode();
    for code in [401, 413, 415] {
        assert!(text.contains(&format!("deprovisioner_activity_batches_total{{code=\"{code}\"}}")), "{code}: {text}");
    }
    assert!(text.contains(r#"deprovisioner_activity_batches_total{code="400"} 2"#), "{text}");
}

#[tokio::test]
async fn past_the_rate_batches_are_told_when_to_come_back() {
    let app = app(1 << 20, 2);
    let three = format!("[{EVENT},{EVENT},{EVENT}]");
    // A full bucket takes a batch larger than a second's worth; the next one waits.
    let (code, _, _) = post(&app, Some(&bearer()), "application/json", three.clone()).await;
    assert_eq!(code, StatusCode::OK);
    let (code, headers, body) = post(&app, Some(&bearer()), "application/json", three).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let text = app.metrics.encode();
    assert!(text.contains(r#"deprovisioner_activity_events_total{outcome="refused"} 3"#), "{text}");
}

#[test]
fn the_rate_refills_with_time() {
    let t0 = Instant::now();
    let mut r = Rate::new(10, t0);
    assert_eq!(r.take(10, t0), Ok(()));
    let wait = r.take(1, t0).unwrap_err();
    assert_eq!(wait, Duration::from_millis(100), "one event's worth");
    assert_eq!(r.take(1, t0 + Duration::from_millis(100)), Ok(()));
    assert!(r.take(1, t0 + Duration::from_millis(100)).is_err());
    // Idle for long, it holds a second's worth, no more.
    assert_eq!(r.take(10, t0 + Duration::from_secs(60)), Ok(()));
    assert!(r.take(1, t0 + Duration::from_secs(60)).is_err());
}

#[test]
fn content_types_by_their_essence() {
    let h = |v: &str| HeaderMap::from_iter([(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap())]);
    assert_eq!(content_type(&h("application/json")), Some(ContentType::Json));
    assert_eq!(content_type(&h("Application/JSON; charset=utf-8")), Some(ContentType::Json));
    assert_eq!(content_type(&h("application/x-ndjson")), Some(ContentType::Ndjson));
    assert_eq!(content_type(&h("application/jsonl")), Some(ContentType::Ndjson));
    assert_eq!(content_type(&h("text/plain")), None);
    assert_eq!(content_type(&HeaderMap::new()), None);
}
