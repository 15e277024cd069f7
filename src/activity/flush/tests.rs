//! The writer against an in-memory API server of ConfigMaps (GET, POST, PUT with
//! resourceVersion): what it writes, what it does not, and conflicts with another writer.

use std::sync::Mutex;

use super::*;
use crate::connector::model::AccountId;
use crate::plan::subject::Principal;
use deprovisioner_core::activity::Entry;
use deprovisioner_core::activity::coverage::{Coverage, STATUS_KEY};

type Handle = tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

/// The ConfigMaps the fake API server holds, and the requests it was sent (`METHOD name`).
#[derive(Default)]
pub(crate) struct Store {
    pub objects: BTreeMap<String, ConfigMap>,
    pub requests: Vec<String>,
    version: u64,
    /// Before the next PUT: another writer stores this shard (the PUT then conflicts).
    pub race: Option<Shard>,
}

impl Store {
    pub fn shard(&self, name: &str) -> Option<Shard> {
        let cm = self.objects.get(name)?;
        serde_json::from_str(cm.data.as_ref()?.get(DATA_KEY)?).ok()
    }

    fn put(&mut self, mut cm: ConfigMap) -> ConfigMap {
        self.version += 1;
        cm.metadata.resource_version = Some(self.version.to_string());
        self.objects.insert(cm.metadata.name.clone().unwrap(), cm.clone());
        cm
    }
}

fn status(code: u16, reason: &str) -> http::Response<kube::client::Body> {
    let body = serde_json::json!({"kind":"Status","apiVersion":"v1","status":"Failure","code":code,"reason":reason,"message":reason});
    http::Response::builder().status(code).body(serde_json::to_vec(&body).unwrap().into()).unwrap()
}

fn ok(code: u16, cm: &ConfigMap) -> http::Response<kube::client::Body> {
    http::Response::builder().status(code).body(serde_json::to_vec(cm).unwrap().into()).unwrap()
}

/// Serves `handle` from `store` until the client is dropped.
pub(crate) fn serve(mut handle: Handle, store: Arc<Mutex<Store>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let body = axum::body::to_bytes(axum::body::Body::new(req.into_body()), 1 << 24).await.unwrap();
            let mut st = store.lock().unwrap();
            let name = path.rsplit('/').next().unwrap().to_string();
            let response = match method {
                http::Method::GET => {
                    st.requests.push(format!("GET {name}"));
                    match st.objects.get(&name) {
                        Some(cm) => ok(200, cm),
                        None => status(404, "NotFound"),
                    }
                }
                http::Method::POST => {
                    let cm: ConfigMap = serde_json::from_slice(&body).unwrap();
                    let name = cm.metadata.name.clone().unwrap();
                    st.requests.push(format!("POST {name}"));
                    match st.objects.contains_key(&name) {
                        true => status(409, "AlreadyExists"),
                        false => {
                            let cm = st.put(cm);
                            ok(201, &cm)
                        }
                    }
                }
                http::Method::PUT => {
                    st.requests.push(format!("PUT {name}"));
                    if let Some(theirs) = st.race.take() {
                        let mut cm = st.objects[&name].clone();
                        cm.data = Some(BTreeMap::from([(DATA_KEY.into(), serde_json::to_string(&theirs).unwrap())]));
                        st.put(cm);
                    }
                    let cm: ConfigMap = serde_json::from_slice(&body).unwrap();
                    let current = st.objects.get(&name).and_then(|c| c.metadata.resource_version.clone());
                    match current {
                        None => status(404, "NotFound"),
                        Some(v) if Some(&v) != cm.metadata.resource_version.as_ref() => status(409, "Conflict"),
                        Some(_) => {
                            let cm = st.put(cm);
                            ok(200, &cm)
                        }
                    }
                }
                other => panic!("unexpected {other} {path}"),
            };
            drop(st);
            send.send_response(response);
        }
    })
}

pub(crate) fn settings() -> StoreSettings {
    StoreSettings {
        namespace: "deprovisioner".into(),
        prefix: "deprovisioner-activity".into(),
        resolution: Duration::from_secs(60),
        max_accounts: 100_000,
        gap: Duration::from_secs(300),
    }
}

/// A clock that always says `at`.
pub(crate) fn fixed(at: &str) -> Clock {
    let at = ts(at);
    Arc::new(move || at)
}

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(crate) fn seen(user: &str, at: &str) -> Sighting {
    Sighting {
        account: AccountId(Principal::user(user)),
        entry: Entry { at: ts(at), credential: Some("X509SHA256=ab".into()), impersonated_by: None, what: None },
    }
}

fn start(settings: StoreSettings) -> (Flusher, Arc<Mutex<Store>>, Arc<Metrics>) {
    let (svc, handle) = tower_test::mock::pair();
    let store = Arc::new(Mutex::new(Store::default()));
    serve(handle, store.clone());
    let metrics = Metrics::new();
    let client = Client::new(svc, "default");
    let (flusher, _writer) = Flusher::start(client, settings, metrics.clone(), fixed("2026-12-07T07:00:00Z"));
    (flusher, store, metrics)
}

fn name_of(user: &str) -> String {
    object_name("deprovisioner-activity", shard_of(&format!("User:{user}")))
}

#[tokio::test]
async fn a_batch_is_stored_before_commit_returns_and_a_repeat_within_the_resolution_writes_nothing() {
    let (flusher, store, metrics) = start(settings());
    flusher.commit(vec![seen("alice", "2026-12-07T08:00:00Z")]).await.unwrap();
    let name = name_of("alice");
    {
        let st = store.lock().unwrap();
        assert_eq!(st.requests, [format!("GET {name}"), format!("POST {name}")]);
        let shard = st.shard(&name).expect("stored when commit returned");
        assert_eq!(shard.accounts["User:alice"].at, ts("2026-12-07T08:00:00Z"));
        assert_eq!(shard.since, ts("2026-12-07T07:00:00Z"), "recording from when it was written");
        let labels = st.objects[&name].metadata.labels.clone().unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "activity");
    }
    // 59 s later: within the resolution, nothing to write (the loop of the operator's own
    // audited writes ends here).
    flusher.commit(vec![seen("alice", "2026-12-07T08:00:59Z")]).await.unwrap();
    assert_eq!(store.lock().unwrap().requests.len(), 2, "no request for a sighting within the resolution");
    // A minute later: one PUT at the cached resourceVersion, no read.
    flusher.commit(vec![seen("alice", "2026-12-07T08:01:00Z")]).await.unwrap();
    let st = store.lock().unwrap();
    assert_eq!(st.requests.len(), 3);
    assert_eq!(st.requests[2], format!("PUT {name}"));
    assert_eq!(st.shard(&name).unwrap().accounts["User:alice"].at, ts("2026-12-07T08:01:00Z"));
    let text = metrics.encode();
    assert!(text.contains(r#"deprovisioner_activity_writes_total{result="unchanged"} 1"#), "{text}");
    assert!(text.contains(r#"deprovisioner_activity_writes_total{result="written"} 2"#), "{text}");
    assert!(text.contains("deprovisioner_activity_accounts 1"), "{text}");
}

#[tokio::test]
async fn a_conflict_reads_the_other_writers_copy_and_keeps_both() {
    let (flusher, store, metrics) = start(settings());
    flusher.commit(vec![seen("alice", "2026-12-07T08:00:00Z")]).await.unwrap();
    let name = name_of("alice");
    // Another replica stores bob in the same shard just before our next write.
    let mut theirs = store.lock().unwrap().shard(&name).unwrap();
    theirs.accounts.insert(
        "User:bob".into(),
        Entry { at: ts("2026-12-07T08:05:00Z"), credential: None, impersonated_by: None, what: None },
    );
    theirs.since = ts("2026-12-07T06:00:00Z");
    store.lock().unwrap().race = Some(theirs);
    flusher.commit(vec![seen("alice", "2026-12-07T08:10:00Z")]).await.unwrap();
    let st = store.lock().unwrap();
    assert_eq!(st.requests[2..], [format!("PUT {name}"), format!("GET {name}"), format!("PUT {name}")]);
    let shard = st.shard(&name).unwrap();
    assert_eq!(shard.accounts["User:alice"].at, ts("2026-12-07T08:10:00Z"));
    assert_eq!(shard.accounts["User:bob"].at, ts("2026-12-07T08:05:00Z"), "the other writer's account is kept");
    assert_eq!(shard.since, ts("2026-12-07T06:00:00Z"), "the earlier since");
    assert!(metrics.encode().contains(r#"deprovisioner_activity_writes_total{result="conflict"} 1"#));
}

#[tokio::test]
async fn a_shard_another_replica_stored_is_merged_not_overwritten() {
    let (flusher, store, _) = start(settings());
    let name = name_of("alice");
    let mut theirs = Shard::new(ts("2026-12-07T05:00:00Z"));
    theirs.accounts.insert(
        "User:carol".into(),
        Entry { at: ts("2026-12-07T08:00:00Z"), credential: None, impersonated_by: None, what: None },
    );
    let json = serde_json::to_string(&theirs).unwrap();
    store.lock().unwrap().put(shard_object(&name, "deprovisioner", None, json));
    flusher.commit(vec![seen("alice", "2026-12-07T08:00:00Z")]).await.unwrap();
    let shard = store.lock().unwrap().shard(&name).unwrap();
    assert!(shard.accounts.contains_key("User:carol") && shard.accounts.contains_key("User:alice"), "{shard:?}");
}

#[tokio::test]
async fn batches_sent_at_once_are_stored_in_few_writes() {
    let (flusher, store, _) = start(settings());
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let f = flusher.clone();
            tokio::spawn(async move { f.commit(vec![seen(&format!("user{i}"), "2026-12-07T08:00:00Z")]).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let st = store.lock().unwrap();
    let stored: usize = st.objects.keys().map(|n| st.shard(n).unwrap().accounts.len()).sum();
    assert_eq!(stored, 50, "every acknowledged sighting is stored");
    let writes = st.requests.iter().filter(|r| !r.starts_with("GET")).count();
    assert!(writes < 50, "group commit: {writes} writes for 50 batches");
}

#[tokio::test]
async fn each_shard_keeps_its_share_of_the_bound() {
    let (flusher, store, metrics) = start(StoreSettings { max_accounts: 64, ..settings() });
    // Two accounts of one shard: the older is forgotten (each shard keeps 64 / 64 = 1).
    let first = "alice";
    let n = shard_of("User:alice");
    let second = (0..).map(|i| format!("u{i}")).find(|u| shard_of(&format!("User:{u}")) == n).unwrap();
    flusher.commit(vec![seen(first, "2026-12-07T08:00:00Z")]).await.unwrap();
    flusher.commit(vec![seen(&second, "2026-12-07T08:01:00Z")]).await.unwrap();
    let shard = store.lock().unwrap().shard(&name_of(first)).unwrap();
    assert_eq!(shard.accounts.keys().collect::<Vec<_>>(), [&format!("User:{second}")]);
    assert_eq!(shard.forgotten_before, Some(ts("2026-12-07T08:00:00.000000001Z")));
    assert!(metrics.encode().contains("deprovisioner_activity_accounts_forgotten_total 1"));
}

#[tokio::test]
async fn an_api_error_fails_the_batch_and_the_shard_is_read_again_next_time() {
    let (svc, mut handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let client = Client::new(svc, "default");
    let (flusher, _w) = Flusher::start(client, settings(), Metrics::new(), fixed("2026-12-07T07:00:00Z"));
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(status(500, "InternalError"));
        handle
    });
    let e = flusher.commit(vec![seen("alice", "2026-12-07T08:00:00Z")]).await.unwrap_err();
    assert!(e.to_string().contains(&name_of("alice")), "{e}");
    let handle = server.await.unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    serve(handle, store.clone());
    flusher.commit(vec![seen("alice", "2026-12-07T08:00:00Z")]).await.unwrap();
    assert_eq!(store.lock().unwrap().requests[0], format!("GET {}", name_of("alice")), "read again");
}

#[tokio::test]
async fn every_shard_is_stored_once_recording_begins_and_none_is_overwritten() {
    let (flusher, store, _) = start(settings());
    let name = name_of("alice");
    let mut theirs = Shard::new(ts("2026-12-07T05:00:00Z"));
    theirs.accounts.insert(
        "User:carol".into(),
        Entry { at: ts("2026-12-07T06:00:00Z"), credential: None, impersonated_by: None, what: None },
    );
    store.lock().unwrap().put(shard_object(&name, "deprovisioner", None, serde_json::to_string(&theirs).unwrap()));
    flusher.store_every_shard().await.unwrap();
    {
        let st = store.lock().unwrap();
        assert_eq!(st.objects.len(), usize::from(SHARDS));
        assert_eq!(st.shard(&name).unwrap(), theirs, "a stored shard is read, not replaced");
        let other = object_name("deprovisioner-activity", (shard_of("User:alice") + 1) % SHARDS);
        assert_eq!(
            st.shard(&other).unwrap(),
            Shard::new(ts("2026-12-07T07:00:00Z")),
            "recording from when it was written"
        );
        assert_eq!(st.requests.iter().filter(|r| r.starts_with("POST")).count(), usize::from(SHARDS) - 1);
    }
    // Done once: asked again, nothing is sent.
    let sent = store.lock().unwrap().requests.len();
    flusher.store_every_shard().await.unwrap();
    assert_eq!(store.lock().unwrap().requests.len(), sent);
}

/// A clock the test moves.
fn movable(at: &str) -> (Clock, Arc<Mutex<Timestamp>>) {
    let now = Arc::new(Mutex::new(ts(at)));
    let read = now.clone();
    (Arc::new(move || *read.lock().unwrap()), now)
}

fn started_with(clock: Clock) -> (Flusher, Arc<Mutex<Store>>, Arc<Metrics>) {
    let (svc, handle) = tower_test::mock::pair();
    let store = Arc::new(Mutex::new(Store::default()));
    serve(handle, store.clone());
    let metrics = Metrics::new();
    let (flusher, _writer) = Flusher::start(Client::new(svc, "default"), settings(), metrics.clone(), clock);
    (flusher, store, metrics)
}

fn coverage(store: &Mutex<Store>) -> Option<Coverage> {
    let st = store.lock().unwrap();
    let cm = st.objects.get("deprovisioner-activity-status")?;
    Some(serde_json::from_str(&cm.data.as_ref()?[STATUS_KEY]).unwrap())
}

#[tokio::test]
async fn a_shard_is_dated_when_it_is_written_not_when_the_writer_started() {
    let (clock, now) = movable("2026-12-07T07:00:00Z");
    let (flusher, store, _) = started_with(clock);
    // An hour passes before the first batch: that hour was not observed.
    *now.lock().unwrap() = ts("2026-12-07T08:00:00Z");
    flusher.commit(vec![seen("alice", "2026-12-07T08:00:00Z")]).await.unwrap();
    assert_eq!(store.lock().unwrap().shard(&name_of("alice")).unwrap().since, ts("2026-12-07T08:00:00Z"));
    // An unreadable shard is replaced, dated when it is written again.
    let bob = (0..).map(|i| format!("b{i}")).find(|u| name_of(u) != name_of("alice")).unwrap();
    let mut cm = shard_object(&name_of(&bob), "deprovisioner", None, "{broken".into());
    cm.metadata.resource_version = None;
    store.lock().unwrap().put(cm);
    *now.lock().unwrap() = ts("2026-12-07T09:00:00Z");
    flusher.commit(vec![seen(&bob, "2026-12-07T09:00:00Z")]).await.unwrap();
    assert_eq!(store.lock().unwrap().shard(&name_of(&bob)).unwrap().since, ts("2026-12-07T09:00:00Z"));
}

#[tokio::test]
async fn recording_begins_at_the_first_received_batch_and_the_status_follows_the_stream() {
    let (clock, now) = movable("2026-12-07T07:00:00Z");
    let (flusher, store, metrics) = started_with(clock);
    assert!(store.lock().unwrap().objects.is_empty(), "nothing is stored before a batch arrives");
    *now.lock().unwrap() = ts("2026-12-07T08:00:00Z");
    flusher.received(vec![seen("alice", "2026-12-07T07:59:59Z")]).await.unwrap();
    {
        let st = store.lock().unwrap();
        assert_eq!(st.objects.len(), usize::from(SHARDS) + 1, "every shard and the status");
        let other = object_name("deprovisioner-activity", (shard_of("User:alice") + 1) % SHARDS);
        assert_eq!(st.shard(&other).unwrap().since, ts("2026-12-07T08:00:00Z"), "dated at the first batch");
    }
    let first = coverage(&store).unwrap();
    assert_eq!((first.covered_from, first.heard_at), (ts("2026-12-07T08:00:00Z"), ts("2026-12-07T08:00:00Z")));
    assert_eq!((first.resolution_seconds, first.gap_seconds), (60, 300));
    assert!(
        metrics.encode().contains("deprovisioner_activity_last_batch_stored_timestamp_seconds 1796630400"),
        "{}",
        metrics.encode()
    );

    // Within the resolution: no write of the status.
    let sent = store.lock().unwrap().requests.len();
    *now.lock().unwrap() = ts("2026-12-07T08:00:30Z");
    flusher.received(vec![]).await.unwrap();
    assert_eq!(store.lock().unwrap().requests.len(), sent, "{:?}", &store.lock().unwrap().requests[sent..]);
    // A minute on: heardAt moves, the stream goes on.
    *now.lock().unwrap() = ts("2026-12-07T08:01:00Z");
    flusher.received(vec![]).await.unwrap();
    let c = coverage(&store).unwrap();
    assert_eq!((c.covered_from, c.heard_at), (ts("2026-12-07T08:00:00Z"), ts("2026-12-07T08:01:00Z")));

    // Another replica heard batches meanwhile: a silence seen only here does not end the stream.
    let theirs = Coverage { heard_at: ts("2026-12-07T08:09:00Z"), ..c.clone() };
    {
        let mut st = store.lock().unwrap();
        let cm = store_object(
            "deprovisioner-activity-status",
            "deprovisioner",
            None,
            STATUS_KEY,
            serde_json::to_string(&theirs).unwrap(),
        );
        st.put(cm);
    }
    *now.lock().unwrap() = ts("2026-12-07T08:10:00Z");
    flusher.received(vec![]).await.unwrap();
    let c = coverage(&store).unwrap();
    assert_eq!(
        (c.covered_from, c.heard_at),
        (ts("2026-12-07T08:00:00Z"), ts("2026-12-07T08:10:00Z")),
        "read again, then extended"
    );

    // Ten minutes of silence: the next batch begins a new stream.
    *now.lock().unwrap() = ts("2026-12-07T08:20:00Z");
    flusher.received(vec![]).await.unwrap();
    let c = coverage(&store).unwrap();
    assert_eq!((c.covered_from, c.heard_at), (ts("2026-12-07T08:20:00Z"), ts("2026-12-07T08:20:00Z")));
}
