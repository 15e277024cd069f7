//! The clock store against a fake API server: an object past the size bound is never sent (its
//! clocks held in memory, counted), and is written again once it fits; errors name the object.

use std::sync::{Arc, Mutex};

use super::*;
use crate::crd::{Clock, StartEvidence};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

type Handle = tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

/// Answers GET with 404, POST and PUT with the object sent, and `fail` (a code) when set;
/// records `METHOD name`.
fn serve(mut handle: Handle, requests: Arc<Mutex<Vec<String>>>, fail: Option<u16>) {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let name = req.uri().path().rsplit('/').next().unwrap_or_default().to_string();
            let body = axum::body::to_bytes(axum::body::Body::new(req.into_body()), 1 << 24).await.unwrap();
            requests.lock().unwrap().push(format!("{method} {name}"));
            let (code, body) = match (fail, method) {
                (Some(_), _) | (None, http::Method::GET) => {
                    let code = fail.unwrap_or(404);
                    let st = serde_json::json!({"kind":"Status","apiVersion":"v1","status":"Failure","code":code,"reason":"x","message":"x"});
                    (code, serde_json::to_vec(&st).unwrap())
                }
                _ => {
                    let mut o: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    o["metadata"]["resourceVersion"] = "7".into();
                    (201, serde_json::to_vec(&o).unwrap())
                }
            };
            send.send_response(http::Response::builder().status(code).body(body.into()).unwrap());
        }
    });
}

fn shards(fail: Option<u16>) -> (Shards, Arc<Mutex<Vec<String>>>) {
    let (svc, handle): (_, Handle) = tower_test::mock::pair();
    let requests = Arc::new(Mutex::new(vec![]));
    serve(handle, requests.clone(), fail);
    let api = Api::all(kube::Client::new(svc, "default"));
    let empty = || Shard { version: None, spec: AccessClockSpec::default(), dirty: false, too_large: false };
    (Shards { api, prefix: "clocks".into(), shards: (0..SHARDS).map(|_| empty()).collect() }, requests)
}

/// `n` subjects with names of `len` bytes in one binding whose UID falls in shard 0 (any other
/// field of the binding's clocks at its default).
#[allow(clippy::needless_update)]
fn one_binding(n: usize, len: usize) -> (String, BTreeMap<String, BindingClocks>) {
    let uid = (0..).map(|i| format!("uid-{i}")).find(|u| shard_of(u) == 0).unwrap();
    let clock = Clock { since: Time("2025-06-01T00:00:00Z".parse().unwrap()), from: StartEvidence::Observed };
    let subjects = (0..n).map(|i| (format!("User:{i:0len$}@x.com"), clock.clone())).collect();
    let b = BindingClocks { binding: "RoleBinding a/rb".into(), subjects, ..Default::default() };
    (uid.clone(), [(uid, b)].into())
}

fn writes(m: &Metrics, result: &'static str) -> u64 {
    m.expiry_clock_writes.get_or_create(&WriteLabels { result }).get()
}

#[tokio::test]
async fn an_object_past_the_size_bound_is_kept_in_memory_and_never_sent() {
    let metrics = Metrics::new();
    let (mut store, requests) = shards(None);
    // 12,000 subjects of ~100 bytes: over 1 MiB.
    let (uid, big) = one_binding(12_000, 60);
    assert!(size(&AccessClockSpec { bindings: big.clone() }) > MAX_BYTES);
    store.save(big.clone(), &metrics).await.unwrap();
    assert!(requests.lock().unwrap().is_empty(), "sent: {:?}", requests.lock().unwrap());
    assert_eq!(writes(&metrics, "too_large"), 1);
    assert_eq!(metrics.expiry_clocks_unsaved.get(), 12_000);
    assert_eq!(store.get(&uid).unwrap().subjects.len(), 12_000, "held in memory");
    assert!(!store.dirty(), "no rescan every second");
    // Fewer subjects: it fits, and is written.
    let (_, small) = one_binding(10, 60);
    store.save(small, &metrics).await.unwrap();
    assert_eq!(*requests.lock().unwrap(), ["POST accessclocks"]);
    assert_eq!((writes(&metrics, "written"), metrics.expiry_clocks_unsaved.get()), (1, 0));
}

#[tokio::test]
async fn a_failed_write_names_the_object_and_is_counted() {
    let metrics = Metrics::new();
    let (mut store, _) = shards(Some(500));
    let (_, small) = one_binding(1, 10);
    let e = store.save(small, &metrics).await.unwrap_err();
    assert!(e.to_string().starts_with("writing AccessClock clocks-0: "), "{e}");
    assert_eq!(writes(&metrics, "failed"), 1);
    assert!(store.dirty());
}
