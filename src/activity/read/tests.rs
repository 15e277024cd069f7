use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use deprovisioner_core::activity::Entry;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn shard_with(account: &str, at: &str) -> Shard {
    let mut s = Shard::new(ts("2025-03-01T00:00:00Z"));
    let e = Entry { at: ts(at), credential: None, impersonated_by: None, what: Some("get pods".into()) };
    assert!(s.record(account, e, Duration::from_secs(60)));
    s
}

fn config_map(name: &str, data: Option<&str>) -> Value {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ops", "labels": {"app.kubernetes.io/component": "activity"}}});
    if let Some(d) = data {
        cm["data"] = json!({DATA_KEY: d});
    }
    cm
}

fn status(code: u16) -> Value {
    let reason = if code == 404 { "NotFound" } else { "Forbidden" };
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": "no"})
}

/// A store whose API server answers from `objects` (name → ConfigMap JSON), refusing label
/// LISTs with `list_status` when given; records every request's path and query.
fn store(objects: Vec<Value>, list_status: Option<u16>) -> (Store, Arc<Mutex<Vec<String>>>) {
    let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = api.next_request().await {
            let path = req.uri().path().to_string();
            log.lock().unwrap().push(format!("{} {}", path, req.uri().query().unwrap_or_default()));
            let (code, body) = if path.ends_with("/configmaps") {
                match list_status {
                    Some(c) => (c, status(c)),
                    None => {
                        (200, json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": objects}))
                    }
                }
            } else {
                let name = path.rsplit('/').next().unwrap_or_default();
                match objects.iter().find(|o| o["metadata"]["name"] == name) {
                    Some(o) => (200, o.clone()),
                    None => (404, status(404)),
                }
            };
            let resp = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    let store = Store { client: Client::new(svc, "ops"), namespace: "ops".into(), prefix: "act".into() };
    (store, seen)
}

#[test]
fn shard_names_are_the_prefix_and_two_digits_below_the_shard_count() {
    assert_eq!(shard_number("act", "act-07"), Some(7));
    assert_eq!(shard_number("act", "act-63"), Some(63));
    assert_eq!(shard_number("act", "act-64"), None);
    assert_eq!(shard_number("act", "act-7"), None);
    assert_eq!(shard_number("act", "act-007"), None);
    assert_eq!(shard_number("act", "other-07"), None);
    assert_eq!(shard_number("act", "act-x"), None);
}

#[tokio::test]
async fn accounts_read_only_their_shards_once_and_a_missing_shard_is_not_recorded() {
    let ann = "User:ann@x.com";
    let n = shard_of(ann);
    let text = serde_json::to_string(&shard_with(ann, "2025-03-05T00:00:00Z")).unwrap();
    let (store, seen) = store(vec![config_map(&object_name("act", n), Some(&text))], None);
    // Bob shares no shard with Ann in this test's ids (checked), so two GETs.
    let bob = (0..100).map(|i| format!("User:bob{i}")).find(|b| shard_of(b) != n).unwrap();
    let shards = store.for_accounts([ann, ann, bob.as_str()]).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2, "{:?}", seen.lock().unwrap());
    assert!(matches!(shards.known(ann), Known::Seen(e) if e.at == ts("2025-03-05T00:00:00Z")));
    assert_eq!(shards.known(&bob), Known::NotRecorded, "its shard does not exist");
    let carol = (0..100).map(|i| format!("User:carol{i}")).find(|c| shard_of(c) == n).unwrap();
    assert_eq!(shards.known(&carol), Known::NotSeenSince(ts("2025-03-01T00:00:00Z")), "same shard, never seen");
}

#[tokio::test]
async fn a_shard_that_does_not_parse_is_an_error_naming_it() {
    let ann = "User:ann@x.com";
    let name = object_name("act", shard_of(ann));
    let (bad, _) = store(vec![config_map(&name, Some("{not json"))], None);
    let e = bad.for_accounts([ann]).await.unwrap_err();
    assert!(matches!(&e, ReadError::Parse { name: n, .. } if *n == name), "{e}");
    assert!(e.to_string().contains(&format!("ops/{name}")), "{e}");
    let (empty, _) = store(vec![config_map(&name, None)], None);
    let e = empty.for_accounts([ann]).await.unwrap_err();
    assert!(e.to_string().contains("no data key ledger.json"), "{e}");
}

#[tokio::test]
async fn a_refused_read_is_an_error_not_an_absence() {
    let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((_, send)) = api.next_request().await {
            let body = Body::from(serde_json::to_vec(&status(403)).unwrap());
            send.send_response(Response::builder().status(403).body(body).unwrap());
        }
    });
    let store = Store { client: Client::new(svc, "ops"), namespace: "ops".into(), prefix: "act".into() };
    let e = store.for_accounts(["User:ann"]).await.unwrap_err();
    assert!(matches!(&e, ReadError::Get { .. }), "{e}");
    assert_eq!(e.kube().and_then(|k| if let kube::Error::Api(s) = k { Some(s.code) } else { None }), Some(403));
}

#[tokio::test]
async fn everything_is_one_list_by_label_or_every_shard_by_name_when_listing_is_refused() {
    let ann = "User:ann@x.com";
    let text = serde_json::to_string(&shard_with(ann, "2025-03-05T00:00:00Z")).unwrap();
    let objects = vec![
        config_map(&object_name("act", shard_of(ann)), Some(&text)),
        config_map("something-else", Some("not ours")),
    ];
    let (listed, seen) = store(objects.clone(), None);
    let shards = listed.all().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(seen.lock().unwrap()[0].contains("labelSelector=app.kubernetes.io%2Fcomponent%3Dactivity"));
    assert_eq!(shards.by_number.len(), usize::from(SHARDS));
    assert_eq!(shards.accounts().len(), 1);
    assert!(matches!(shards.known(ann), Known::Seen(_)));

    let (by_name, seen) = store(objects, Some(403));
    let shards = by_name.all().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1 + usize::from(SHARDS), "the refused list, then a GET per shard");
    assert!(matches!(shards.known(ann), Known::Seen(_)));
    assert_eq!(shards.recording_since(), Some(ts("2025-03-01T00:00:00Z")));

    // Many accounts in many shards: one list rather than a GET each.
    let (many, seen) = store(vec![], None);
    let ids: Vec<String> = (0..200).map(|i| format!("User:u{i}")).collect();
    many.for_accounts(ids.iter().map(String::as_str)).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_coverage_is_read_from_the_status_object_and_absent_without_it() {
    let ann = "User:ann@x.com";
    let text = serde_json::to_string(&shard_with(ann, "2025-03-05T00:00:00Z")).unwrap();
    let shard = config_map(&object_name("act", shard_of(ann)), Some(&text));
    let (none, _) = store(vec![shard.clone()], None);
    assert_eq!(none.for_accounts_covered([ann]).await.unwrap().coverage, None, "no batch was ever stored");
    let coverage = Coverage {
        covered_from: ts("2025-03-01T00:00:00Z"),
        heard_at: ts("2025-03-06T00:00:00Z"),
        resolution_seconds: 60,
        gap_seconds: 300,
    };
    let mut status = config_map("act-status", None);
    status["data"] = json!({STATUS_KEY: serde_json::to_string(&coverage).unwrap()});
    let (with, _) = store(vec![shard, status.clone()], None);
    assert_eq!(with.for_accounts_covered([ann]).await.unwrap().coverage.as_ref(), Some(&coverage));
    let all = with.all_covered().await.unwrap();
    assert_eq!(all.coverage.as_ref(), Some(&coverage));
    assert_eq!(all.accounts().len(), 1, "the status object is not a shard");
    status["data"] = json!({STATUS_KEY: "{"});
    let (bad, _) = store(vec![status], None);
    let e = bad.all_covered().await.unwrap_err();
    assert!(e.to_string().contains("ops/act-status"), "{e}");
}
