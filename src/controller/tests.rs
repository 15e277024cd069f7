//! The controller's write sequence against a mocked API server (tower-test): the plan is written
//! before any binding changes, each result is written as it completes, then the terminal phase.
//! The same behaviour is proven against a real API server in `tests/`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::reconcile::reconcile;
use super::{Context, Settings};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{DeprovisionRequest, DeprovisionRequestStatus, Outcome, Phase};
use crate::plan::subject::Protected;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn ctx(give_up_after: Duration) -> (Arc<Context>, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let settings = Settings {
        retention: Duration::from_secs(3600),
        give_up_after,
        protected: Protected::default(),
        concurrency: 1,
        reviews_per_binding: crate::verify::reviews::DEFAULT_PER_BINDING,
        #[cfg(feature = "failpoints")]
        failpoints: Default::default(),
        namespace: "deprovisioner".into(),
        metrics: crate::metrics::Metrics::new(),
        regrant_watch: Duration::ZERO,
        last_activity: None,
        expiry_clocks: None,
        fleet_hub: false,
        fleet_member_timeout: Duration::from_secs(7 * 86_400),
        fleet_agent: None,
    };
    (Context::new(client, settings, Default::default(), Default::default()), ApiServer::new(handle))
}

fn request() -> DeprovisionRequest {
    serde_json::from_value(json!({
        "apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "DeprovisionRequest",
        "metadata": {"name": "req", "resourceVersion": "1", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"application": {"appId": "app"}, "targetUser": {"email": "p@x.io"}}
    }))
    .unwrap()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": items})
}

/// The one policy: User `{{target_user.email}}` in the RoleBindings of namespace `team`.
fn policies() -> Value {
    let policy = json!({"apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "DeprovisionPolicy",
        "metadata": {"name": "pol"},
        "spec": {"application": {"appId": "app"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
                 "rules": [{"roleBindings": {"namespaces": ["team"]}}]}});
    list("DeprovisionPolicyList", vec![policy])
}

fn binding() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "rb", "namespace": "team", "uid": "u1", "resourceVersion": "7"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "p@x.io"}, {"kind": "User", "name": "other@x.io"}]})
}

const DPR: &str = "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests";
const STATUS: &str = "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests/req/status";
const RB: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb";
const POLICIES: &str = "/apis/access.deprovisioner.dev/v1alpha1/deprovisionpolicies";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// Checks a call's body.
type Check = Box<dyn FnOnce(&Value) + Send>;

/// One expected call: method, path, the answer (`None`: echo the body sent) and a check.
struct Expected {
    method: Method,
    path: String,
    status: StatusCode,
    reply: Option<Value>,
    check: Check,
}

/// A mocked API server that expects calls in exactly this order, built by chaining, e.g.
/// `ApiServer::new(h).get(path, obj).put_status(|s| ...).event(|e| ...).run()`.
struct ApiServer {
    handle: Handle,
    expected: Vec<Expected>,
}

impl ApiServer {
    fn new(handle: Handle) -> Self {
        ApiServer { handle, expected: Vec::new() }
    }

    fn call(
        mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        reply: Option<Value>,
        check: impl FnOnce(&Value) + Send + 'static,
    ) -> Self {
        self.expected.push(Expected { method, path: path.into(), status, reply, check: Box::new(check) });
        self
    }

    /// A GET answered with `obj`.
    fn get(self, path: &str, obj: Value) -> Self {
        self.call(Method::GET, path, StatusCode::OK, Some(obj), |_| {})
    }

    /// A failing GET.
    fn get_fails(self, path: &str, status: StatusCode, error: Value) -> Self {
        self.call(Method::GET, path, status, Some(error), |_| {})
    }

    /// A replace, echoed back as stored; `check` sees the object sent.
    fn put(self, path: &str, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.call(Method::PUT, path, StatusCode::OK, None, check)
    }

    /// A status write of the request, echoed back as stored.
    fn put_status(self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.put(STATUS, check)
    }

    /// An Event, created.
    fn event(self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.call(Method::POST, EVENTS, StatusCode::CREATED, None, check)
    }

    /// The fresh read every reconcile starts with.
    fn fresh_read(self, obj: &DeprovisionRequest) -> Self {
        self.get(&format!("{DPR}/req"), serde_json::to_value(obj).unwrap())
    }

    /// The reads planning makes without a binding index: policies, the RoleBindings of namespace
    /// `team` (no rule selects namespaces by label, so namespaces are not read).
    fn planning_reads(self) -> Self {
        self.get(POLICIES, policies()).get(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
            list("RoleBindingList", vec![binding()]),
        )
    }

    /// The verification's calls: the policies; the role of the removed binding (`removed`); one
    /// SubjectAccessReview, answered `allowed_by` a binding (or denied); every RoleBinding and
    /// ClusterRoleBinding (no index here), answered with `residual`.
    fn verification_reads(self, removed: bool, allowed_by: Option<&str>, residual: Vec<Value>) -> Self {
        let mut s = self.get(POLICIES, policies());
        if removed {
            let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "edit"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
            let answer = match allowed_by {
                Some(b) => {
                    json!({"allowed": true, "reason": format!("RBAC: allowed by ClusterRoleBinding {b:?} of ClusterRole \"admin\" to User \"p@x.io\"")})
                }
                None => json!({"allowed": false}),
            };
            s = s.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/edit", role).call(
                Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                StatusCode::CREATED,
                Some(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}, "status": answer})),
                |asked| {
                    assert_eq!(asked["spec"]["user"], "p@x.io");
                    let attrs = &asked["spec"]["resourceAttributes"];
                    assert_eq!((&attrs["verb"], &attrs["resource"], &attrs["namespace"]), (&json!("get"), &json!("pods"), &json!("team")));
                },
            );
        }
        let (rbs, crbs): (Vec<Value>, Vec<Value>) = residual.into_iter().partition(|b| b["kind"] == "RoleBinding");
        s.get("/apis/rbac.authorization.k8s.io/v1/rolebindings", list("RoleBindingList", rbs))
            .get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", list("ClusterRoleBindingList", crbs))
    }

    /// Answers the expected calls in order, then checks that no other call comes. Events are
    /// published off the reconcile's path, so they are in order among themselves only.
    fn run(self) -> tokio::task::JoinHandle<()> {
        let ApiServer { mut handle, expected } = self;
        let (mut events, mut calls): (VecDeque<_>, VecDeque<_>) = expected.into_iter().partition(|e| e.path == EVENTS);
        tokio::spawn(async move {
            while !events.is_empty() || !calls.is_empty() {
                let (req, send) = handle.next_request().await.expect("another API call");
                let queue = if req.uri().path() == EVENTS { &mut events } else { &mut calls };
                let e = queue.pop_front().unwrap_or_else(|| panic!("unexpected call {} {}", req.method(), req.uri()));
                assert_eq!((req.method(), req.uri().path()), (&e.method, e.path.as_str()), "unexpected call order");
                let body = req.into_body().collect_bytes().await.unwrap();
                let sent: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
                (e.check)(&sent);
                let reply = e.reply.unwrap_or(sent);
                let response =
                    Response::builder().status(e.status).body(Body::from(serde_json::to_vec(&reply).unwrap()));
                send.send_response(response.unwrap());
            }
            assert!(handle.next_request().await.is_none(), "no call beyond the expected ones");
        })
    }
}

/// An API error as the API server words it.
fn status_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code})
}

#[tokio::test]
async fn a_stale_cached_copy_is_never_acted_on() {
    // The cache still shows the request Pending; the API server has it finished.
    let (ctx, api) = ctx(Duration::from_secs(900));
    let mut done = request();
    done.status = Some(DeprovisionRequestStatus {
        phase: Phase::Succeeded,
        completed_at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    });
    let server = api.fresh_read(&done).run(); // and then no plan, no action, no write
    reconcile(Arc::new(request()), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn plan_is_written_before_the_binding_changes_and_results_with_the_finish() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    let server = api
        .fresh_read(&request())
        .planning_reads()
        .put_status(|planned| {
            assert_eq!(planned["status"]["phase"], "InProgress");
            assert_eq!(planned["status"]["plan"].as_array().unwrap().len(), 1);
            assert!(planned["status"].get("results").is_none(), "nothing done before the plan is recorded");
            assert_eq!(planned["metadata"]["resourceVersion"], "1", "status writes are guarded by resourceVersion");
        })
        .get(RB, binding())
        .put(RB, |written| {
            assert_eq!(written["metadata"]["resourceVersion"], "7");
            assert_eq!(written["subjects"], json!([{"kind": "User", "name": "other@x.io"}]));
        })
        .event(|event| assert_eq!(event["reason"], "Removed"))
        .verification_reads(true, None, vec![])
        // One write records the result, the verification and the end: a plan this short is not
        // written piecemeal.
        .put_status(|finished| {
            assert_eq!(finished["status"]["results"][0]["outcome"], "Removed");
            assert_eq!(finished["status"]["phase"], "Succeeded");
            assert!(finished["status"]["completedAt"].is_string());
            let v = &finished["status"]["verification"];
            assert_eq!(v["reviews"][0]["allowed"], false);
            assert_eq!(v["identities"], json!(["User p@x.io"]));
            let verified =
                finished["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Verified");
            assert_eq!(verified.unwrap()["status"], "True");
            assert!(finished["status"]["message"].as_str().unwrap().ends_with("; verified: no remaining access"));
        })
        .event(|event| assert_eq!((&event["reason"], &event["action"]), (&json!("Succeeded"), &json!("Complete"))))
        .run();
    let metrics = ctx.settings.metrics.clone();
    reconcile(Arc::new(request()), ctx).await.unwrap();
    server.await.unwrap();
    let text = metrics.encode();
    assert!(text.contains(r#"deprovisioner_actions_total{kind="RemoveBindingSubject",outcome="Removed"} 1"#), "{text}");
    assert!(text.contains(r#"deprovisioner_requests_finished_total{phase="Succeeded"} 1"#), "{text}");
}

#[tokio::test]
async fn resumed_request_skips_recorded_actions() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    // A request whose plan and first result are already recorded (a crash happened after them).
    let mut req = request();
    let mut plan = json!([{"id": 0, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
        "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": "rb", "uid": "u1", "roleRef": "ClusterRole/edit"},
                    "subject": {"kind": "User", "name": "p@x.io"}, "whenEmpty": "Delete"}}]);
    plan.as_array_mut().unwrap().push(json!({"id": 1, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
        "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": "rb", "uid": "u1", "roleRef": "ClusterRole/edit"},
                    "subject": {"kind": "User", "name": "other@x.io"}, "whenEmpty": "Keep"}}));
    req.status = Some(
        serde_json::from_value(json!({"phase": "InProgress", "policies": ["pol"], "plan": plan, "removed": 1,
        "results": [{"id": 0, "kind": "RemoveBindingSubject", "object": "RoleBinding team/rb", "subject": "User p@x.io",
                     "outcome": "Removed", "message": "m", "at": "2026-01-01T00:00:01Z"}]}))
        .unwrap(),
    );
    let mut rb = binding();
    rb["subjects"] = json!([{"kind": "User", "name": "other@x.io"}]);
    let server = api
        .fresh_read(&req)
        .get(RB, rb)
        .put(RB, |kept| assert_eq!(kept["subjects"], json!([]), "kept empty per the plan's rule"))
        .event(|event| assert_eq!(event["reason"], "Removed"))
        .verification_reads(true, None, vec![])
        .put_status(|finished| {
            let results = finished["status"]["results"].as_array().unwrap();
            let ids: Vec<i64> = results.iter().map(|r| r["id"].as_i64().unwrap()).collect();
            assert_eq!(ids, vec![0, 1]);
            assert_eq!(finished["status"]["phase"], "Succeeded");
            assert_eq!(finished["status"]["removed"], 2);
        })
        .event(|event| assert_eq!(event["reason"], "Succeeded"))
        .run();
    reconcile(Arc::new(req), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn api_errors_past_the_bounded_time_end_failed() {
    // give_up_after 0: the first transient error is final.
    let (ctx, api) = ctx(Duration::ZERO);
    let server = api
        .fresh_read(&request())
        .planning_reads()
        .put_status(|planned| assert_eq!(planned["status"]["phase"], "InProgress"))
        .get_fails(RB, StatusCode::INTERNAL_SERVER_ERROR, status_error(500, "InternalError", "etcd is sulking"))
        .put_status(|failed| {
            let st: DeprovisionRequestStatus = serde_json::from_value(failed["status"].clone()).unwrap();
            assert_eq!(st.phase, Phase::Failed);
            assert_eq!(st.results[0].outcome, Outcome::Failed);
            let msg = &st.results[0].message;
            assert!(msg.contains("gave up after") && msg.contains("etcd is sulking"), "{msg}");
            assert_eq!(st.retries, 1);
        })
        .event(|event| assert_eq!(event["reason"], "ActionsFailed"))
        .run();
    let metrics = ctx.settings.metrics.clone();
    reconcile(Arc::new(request()), ctx).await.unwrap();
    server.await.unwrap();
    let text = metrics.encode();
    assert!(text.contains(r#"deprovisioner_requests_finished_total{phase="Failed"} 1"#), "{text}");
}

#[tokio::test]
async fn a_refused_action_is_recorded_failed_with_the_api_servers_reason() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    let server = api
        .fresh_read(&request())
        .planning_reads()
        .put_status(|planned| assert_eq!(planned["status"]["phase"], "InProgress"))
        .get(RB, binding())
        .call(Method::PUT, RB, StatusCode::FORBIDDEN, Some(status_error(403, "Forbidden", "may not bind")), |_| {})
        .event(|event| assert_eq!((&event["reason"], &event["type"]), (&json!("ActionFailed"), &json!("Warning"))))
        .verification_reads(false, None, vec![binding()])
        .put_status(|finished| {
            let residual = &finished["status"]["verification"]["residual"][0];
            assert_eq!(residual["name"], "rb");
            assert!(residual["why"].as_str().unwrap().starts_with("its removal failed"), "{residual}");
            let result = &finished["status"]["results"][0];
            assert_eq!(result["outcome"], "Failed");
            let msg = result["message"].as_str().unwrap();
            assert!(msg.contains("may not bind") && msg.contains("needs the `bind` verb on ClusterRole/edit"), "{msg}");
            assert_eq!(finished["status"]["phase"], "Failed");
        })
        .event(|event| assert_eq!(event["reason"], "ActionsFailed"))
        .run();
    reconcile(Arc::new(request()), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_status_the_api_server_refuses_ends_failed_instead_of_looping() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    let invalid = status_error(422, "Invalid", "status.plan[0].x: Required value");
    let server = api
        .fresh_read(&request())
        .planning_reads()
        .call(Method::PUT, STATUS, StatusCode::UNPROCESSABLE_ENTITY, Some(invalid), |_| {})
        .put_status(|minimal| {
            assert_eq!(minimal["status"]["phase"], "Failed");
            assert!(minimal["status"]["message"].as_str().unwrap().contains("status.plan[0].x: Required value"));
            assert!(minimal["status"].get("plan").is_none());
        })
        .run();
    let err = reconcile(Arc::new(request()), ctx).await.unwrap_err();
    assert!(matches!(err, super::Error::Unrecordable { .. }), "{err}");
    assert_eq!(err.metric_label(), "status_unrecordable");
    server.await.unwrap();
}

#[tokio::test]
async fn a_status_too_large_for_etcd_keeps_what_was_recorded_and_says_what_was_not() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    let too_large = status_error(500, "InternalError", "etcdserver: request is too large");
    let server = api
        .fresh_read(&request())
        .planning_reads()
        .put_status(|planned| assert_eq!(planned["status"]["plan"].as_array().unwrap().len(), 1))
        .get(RB, binding())
        .put(RB, |_| {})
        .event(|event| assert_eq!(event["reason"], "Removed"))
        .verification_reads(true, None, vec![])
        .call(Method::PUT, STATUS, StatusCode::INTERNAL_SERVER_ERROR, Some(too_large), |_| {})
        .put_status(|kept| {
            assert_eq!(kept["status"]["phase"], "Failed");
            assert_eq!(kept["status"]["plan"].as_array().unwrap().len(), 1, "the recorded plan stays");
            let msg = kept["status"]["message"].as_str().unwrap();
            assert!(msg.contains("request is too large") && msg.contains("action(s) 0 (Removed)"), "{msg}");
        })
        .run();
    let err = reconcile(Arc::new(request()), ctx).await.unwrap_err();
    assert_eq!(err.metric_label(), "status_unrecordable");
    server.await.unwrap();
}

#[tokio::test]
async fn access_the_authorizer_still_allows_fails_the_request_and_names_the_binding() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    let admins = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "team-admins", "uid": "u2"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "p@x.io"}]});
    let server = api
        .fresh_read(&request())
        .planning_reads()
        .put_status(|_| {})
        .get(RB, binding())
        .put(RB, |_| {})
        .event(|event| assert_eq!(event["reason"], "Removed"))
        .verification_reads(true, Some("team-admins"), vec![admins])
        .put_status(|finished| {
            let st: DeprovisionRequestStatus = serde_json::from_value(finished["status"].clone()).unwrap();
            assert_eq!(st.phase, Phase::Failed, "onResidualAccess defaults to Fail");
            assert_eq!(st.results[0].outcome, Outcome::Removed, "the removal stays done and recorded");
            let msg = st.message.unwrap();
            assert!(
                msg.ends_with(
                    "; still allowed to get pods in team via ClusterRoleBinding team-admins (not covered by policy pol)"
                ),
                "{msg}"
            );
            let verified = st.conditions.iter().find(|c| c.type_ == "Verified").unwrap();
            assert_eq!((verified.status.as_str(), verified.reason.as_str()), ("False", "AccessRemains"));
            let complete = st.conditions.iter().find(|c| c.type_ == "Complete").unwrap();
            assert_eq!(complete.reason, "AccessRemains");
        })
        .event(|event| {
            assert_eq!((&event["reason"], &event["type"]), (&json!("AccessRemains"), &json!("Warning")));
            assert!(event["note"].as_str().unwrap().contains("still allowed to get pods in team"), "{event}");
        })
        .run();
    reconcile(Arc::new(request()), ctx).await.unwrap();
    server.await.unwrap();
}

/// An Event waits while a request is being worked (its writes hold the API budget), or a call
/// waits to be recorded (its create queues for the budget), and is published once those are
/// done: in a burst, the API server's time goes to the writes that record and finish requests.
#[tokio::test]
async fn events_wait_until_the_controller_is_idle() {
    use crate::budget::{Budget, BudgetLayer, Priority};
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let metrics = crate::metrics::Metrics::new();
    let budget = Budget::new(1, metrics.clone());
    let svc = tower::Layer::layer(&BudgetLayer(budget.clone()), svc);
    let recorder = Recorder::new(Client::new(svc, "default"), Reporter { controller: "t".into(), instance: None });
    let events = super::local::Events::start(recorder, metrics);
    let held = budget.acquire(Priority::Status).await; // a request being worked
    let ev = Event {
        type_: EventType::Normal,
        reason: "Removed".into(),
        note: None,
        action: "Execute".into(),
        secondary: None,
    };
    events.send(ev, request().object_ref(&()));
    let early = tokio::time::timeout(Duration::from_millis(400), handle.next_request()).await;
    assert!(early.is_err(), "an Event was published while a request was being worked");
    let recording = tokio::spawn({
        let budget = budget.clone();
        async move {
            let permit = budget.acquire(Priority::Create).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            drop(permit);
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    let early = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(early.is_err(), "an Event was published while a call waited to be recorded");
    recording.await.unwrap();
    let (req, send) = tokio::time::timeout(Duration::from_secs(2), handle.next_request())
        .await
        .expect("the Event once idle")
        .expect("a request");
    assert_eq!(req.method(), Method::POST);
    assert!(req.uri().path().ends_with("/events"), "{}", req.uri());
    send.send_response(Response::builder().status(201).body(Body::from(b"{}".to_vec())).unwrap());
}

/// A full Event queue drops the Event and counts it.
#[tokio::test]
async fn a_full_event_queue_drops_and_counts() {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (svc, _unanswered) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let metrics = crate::metrics::Metrics::new();
    let recorder = Recorder::new(Client::new(svc, "default"), Reporter { controller: "t".into(), instance: None });
    let events = super::local::Events::start(recorder, metrics.clone());
    let ev = || Event {
        type_: EventType::Normal,
        reason: "Removed".into(),
        note: None,
        action: "Execute".into(),
        secondary: None,
    };
    // One is taken by the publisher (whose API call is never answered), 4,096 fill the queue.
    for _ in 0..4098 {
        events.send(ev(), request().object_ref(&()));
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.events_dropped.get(), 1);
}

/// A request handed over by the webhook enters the view's watch of unfinished requests (which
/// the controller's runner follows) before the watch brings it, is remembered as created with its
/// call's arrival (which bounds its plan's barrier), and is counted `taken`; with no controller
/// running here (closed), it is refused and counted.
#[tokio::test]
async fn a_handed_over_request_enters_the_stream_with_its_arrival() {
    use futures::StreamExt;
    let metrics = crate::metrics::Metrics::new();
    let handoff = super::Handoff::new(metrics.clone());
    let arrived = std::time::Instant::now();
    assert!(!handoff.give(request(), arrived), "no controller here");
    let (svc, _unserved) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let stop = tokio_util::sync::CancellationToken::new();
    let view = crate::view::View::fed(
        &kube::Client::new(svc, "ops"),
        "ops",
        "sentinel",
        futures::stream::pending(),
        futures::stream::pending(),
        futures::stream::pending(),
        futures::stream::pending(),
        None,
        &stop,
    );
    let local = Arc::new(super::local::Local::default());
    let mut handed = std::pin::pin!(view.requests.watched.applied());
    handoff.open(local.clone(), view.clone());
    assert!(handoff.is_open());
    assert!(handoff.give(request(), arrived));
    match tokio::time::timeout(Duration::from_secs(5), handed.next()).await {
        Ok(Some(obj)) => assert_eq!(obj.metadata.name.as_deref(), Some("req")),
        other => panic!("expected the handed request, got {other:?}"),
    }
    assert_eq!(local.arrival("req"), Some(arrived));
    assert!(local.known("req").is_some());
    handoff.close();
    assert!(!handoff.give(request(), arrived), "closed when the term ends");
    let count = |outcome| metrics.handoffs.get_or_create(&crate::metrics::HandoffLabels { outcome }).get();
    assert_eq!((count("taken"), count("refused")), (1, 2));
    stop.cancel();
}

/// A reconcile whose turn comes once the term of leadership has ended returns without reading or
/// writing anything: the next leader works the request, and this one's Lease is released
/// without waiting for it.
#[tokio::test]
async fn a_reconcile_waiting_for_its_turn_returns_when_the_term_ends() {
    let (ctx, _unserved) = ctx(Duration::from_secs(60));
    ctx.stop.cancel();
    // An API call would never be answered here: returning proves none was made.
    let done = tokio::time::timeout(Duration::from_secs(2), reconcile(Arc::new(request()), ctx.clone()))
        .await
        .expect("returned at the term's end");
    assert!(done.is_ok());
}

/// A controller stopped before its watch listed ends at once (kube-runtime would wait forever for
/// that list); one stopped after it is waited for, as its reconciles under way must finish.
#[tokio::test(start_paused = true)]
async fn a_controller_stopped_before_its_first_list_ends_and_one_after_it_is_waited_for() {
    use kube::runtime::{reflector, watcher};
    use tokio_util::sync::CancellationToken;
    let stop = CancellationToken::new();
    stop.cancel();

    let (unlisted, _writer) = reflector::store::<DeprovisionRequest>();
    let never_ends = std::future::pending::<()>();
    tokio::time::timeout(Duration::from_secs(60), super::until_stopped(never_ends, unlisted, &stop))
        .await
        .expect("a controller that never listed ends on the stop");

    let (listed, mut writer) = reflector::store::<DeprovisionRequest>();
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let (finished, reconciles_done) = tokio::sync::oneshot::channel::<()>();
    let ends_when_its_reconciles_do = async {
        let _ = reconciles_done.await;
    };
    let waited = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        super::until_stopped(ends_when_its_reconciles_do, listed, &stop).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!waited.is_finished(), "a listed controller is waited for");
    finished.send(()).unwrap();
    assert_eq!(waited.await.unwrap(), Duration::from_secs(30), "until it ends by itself");
}

/// A record deleted and created again under its name (the same call sent again) is another
/// request: the copy this controller kept of the old one (finished) is not taken for the new one,
/// which is read afresh and worked.
#[tokio::test]
async fn a_kept_copy_of_another_request_under_the_same_name_is_read_afresh() {
    let (ctx, api) = ctx(Duration::from_secs(900));
    let mut old = request();
    old.metadata.uid = Some("uid-old".into());
    old.status = Some(DeprovisionRequestStatus {
        phase: Phase::Succeeded,
        completed_at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    });
    ctx.local.remember(&old);
    let mut new = request();
    new.metadata.uid = Some("uid-new".into());
    let mut done = new.clone();
    done.status = Some(DeprovisionRequestStatus { phase: Phase::Failed, ..Default::default() });
    // One read of the new request (here found finished already): without it, the old copy
    // would answer "finished" and the new request would never be worked.
    let server = api.fresh_read(&done).run();
    reconcile(Arc::new(new), ctx.clone()).await.unwrap();
    assert!(ctx.local.known("req").is_none_or(|o| o.metadata.uid.as_deref() != Some("uid-old")));
    drop(ctx); // the mocked API server ends when its last client goes
    server.await.unwrap();
}

/// A hand-off that comes after this controller already wrote the same request (its call's task
/// was slow to hand it over) never replaces the newer copy the next reconcile starts from; a
/// request of the same name but another UID (deleted and created again) is taken.
#[test]
fn a_late_hand_off_never_replaces_a_newer_copy() {
    let local = super::local::Local::default();
    let mut created = request();
    created.metadata.uid = Some("u1".into());
    let mut planned = created.clone();
    planned.status = Some(crate::crd::DeprovisionRequestStatus { phase: Phase::InProgress, ..Default::default() });
    local.remember(&planned);
    let arrived = std::time::Instant::now();
    local.take(&created, arrived);
    let known = local.known("req").unwrap();
    assert_eq!(known.status.map(|s| s.phase), Some(Phase::InProgress), "the newer copy stays");
    assert_eq!(local.arrival("req"), Some(arrived), "its arrival is still known");
    let mut again = request();
    again.metadata.uid = Some("u2".into());
    local.take(&again, arrived);
    assert_eq!(local.known("req").unwrap().metadata.uid.as_deref(), Some("u2"), "another request is taken");
}
