//! The controller's write sequence against a mocked API server (tower-test): the plan is written
//! before any binding changes, each result is written as it completes, then the terminal phase.
//! The same behaviour is proven against a real API server in `tests/`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::{Context, Settings, reconcile};
use crate::crd::{DeprovisionRequest, Outcome, Phase};
use crate::subject::Protected;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn ctx(give_up_after: Duration) -> (Arc<Context>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let settings = Settings {
        retention: Duration::from_secs(3600),
        give_up_after,
        protected: Protected::default(),
        concurrency: 1,
        exit_after_results: None,
        namespace: "deprovisioner".into(),
        metrics: crate::metrics::Metrics::new(),
    };
    let recorder = Recorder::new(client.clone(), Reporter { controller: "test".into(), instance: None });
    (
        Arc::new(Context {
            client: client.clone(),
            recorder,
            settings,
            external: crate::external::Env { client, namespace: "deprovisioner".into() },
        }),
        handle,
    )
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

fn binding() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "rb", "namespace": "team", "uid": "u1", "resourceVersion": "7"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "p@x.io"}, {"kind": "User", "name": "other@x.io"}]})
}

/// Answers the next call, after checking its method and path; returns the request body.
async fn expect(handle: &mut Handle, method: Method, path: &str, status: StatusCode, reply: Value) -> Value {
    let (req, send) = handle.next_request().await.expect("another API call");
    assert_eq!((req.method(), req.uri().path()), (&method, path), "unexpected call order");
    let body = req.into_body().collect_bytes().await.unwrap();
    let sent: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
    let reply = if reply.is_null() { sent.clone() } else { reply };
    send.send_response(
        Response::builder().status(status).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
    );
    sent
}

/// Every reconcile starts by reading the request afresh.
async fn fresh_read(handle: &mut Handle, obj: &DeprovisionRequest) {
    expect(handle, Method::GET, &format!("{DPR}/req"), StatusCode::OK, serde_json::to_value(obj).unwrap()).await;
}

const DPR: &str = "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests";

async fn planning_calls(handle: &mut Handle) {
    {
        let policy = json!({"apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "DeprovisionPolicy",
            "metadata": {"name": "pol"},
            "spec": {"application": {"appId": "app"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
                     "rules": [{"roleBindings": {"namespaces": ["team"]}}]}});
        expect(
            handle,
            Method::GET,
            "/apis/access.deprovisioner.dev/v1alpha1/deprovisionpolicies",
            StatusCode::OK,
            list("DeprovisionPolicyList", vec![policy]),
        )
        .await;
        expect(
            handle,
            Method::GET,
            "/api/v1/namespaces",
            StatusCode::OK,
            list("NamespaceList", vec![json!({"metadata": {"name": "team"}})]),
        )
        .await;
        expect(
            handle,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
            StatusCode::OK,
            list("RoleBindingList", vec![binding()]),
        )
        .await;
    }
}

#[tokio::test]
async fn a_stale_cached_copy_is_never_acted_on() {
    // The cache still shows the request Pending; the API server has it finished.
    let (ctx, mut handle) = ctx(Duration::from_secs(900));
    let mut done = request();
    done.status = Some(crate::crd::DeprovisionRequestStatus {
        phase: Phase::Succeeded,
        completed_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    });
    let server = tokio::spawn(async move {
        fresh_read(&mut handle, &done).await;
        assert!(handle.next_request().await.is_none(), "no plan, no action, no write");
    });
    reconcile(Arc::new(request()), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn plan_is_written_before_the_binding_changes_and_each_result_after() {
    let (ctx, mut handle) = ctx(Duration::from_secs(900));
    let server = tokio::spawn(async move {
        fresh_read(&mut handle, &request()).await;
        planning_calls(&mut handle).await;
        let planned = expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        assert_eq!(planned["status"]["phase"], "InProgress");
        assert_eq!(planned["status"]["plan"].as_array().unwrap().len(), 1);
        assert!(planned["status"].get("results").is_none(), "nothing done before the plan is recorded");
        assert_eq!(planned["metadata"]["resourceVersion"], "1", "status writes are guarded by resourceVersion");

        expect(
            &mut handle,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb",
            StatusCode::OK,
            binding(),
        )
        .await;
        let written = expect(
            &mut handle,
            Method::PUT,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb",
            StatusCode::OK,
            Value::Null,
        )
        .await;
        assert_eq!(written["metadata"]["resourceVersion"], "7");
        assert_eq!(written["subjects"], json!([{"kind": "User", "name": "other@x.io"}]));

        let recorded =
            expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        assert_eq!(recorded["status"]["results"][0]["outcome"], "Removed");
        assert_eq!(recorded["status"]["phase"], "InProgress");
        let event = expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            StatusCode::CREATED,
            Value::Null,
        )
        .await;
        assert_eq!(event["reason"], "Removed");

        let finished =
            expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        assert_eq!(finished["status"]["phase"], "Succeeded");
        assert!(finished["status"]["completedAt"].is_string());
        expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            StatusCode::CREATED,
            Value::Null,
        )
        .await;
        handle
    });
    let metrics = ctx.settings.metrics.clone();
    reconcile(Arc::new(request()), ctx).await.unwrap();
    let mut handle = server.await.unwrap();
    let text = metrics.encode();
    assert!(text.contains(r#"deprovisioner_actions_total{kind="RemoveBindingSubject",outcome="Removed"} 1"#), "{text}");
    assert!(text.contains(r#"deprovisioner_requests_finished_total{phase="Succeeded"} 1"#), "{text}");
    // No further calls: the client is gone and nothing was left queued.
    assert!(handle.next_request().await.is_none());
}

#[tokio::test]
async fn resumed_request_skips_recorded_actions() {
    let (ctx, mut handle) = ctx(Duration::from_secs(900));
    // A request whose plan and first result are already recorded (a crash happened after them).
    let mut req = request();
    let mut plan = json!([{"id": 0, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
        "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": "rb", "uid": "u1", "roleRef": "ClusterRole/edit"},
                    "subject": {"kind": "User", "name": "p@x.io"}, "whenEmpty": "Delete"}}]);
    plan.as_array_mut().unwrap().push(json!({"id": 1, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
        "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": "rb", "uid": "u1", "roleRef": "ClusterRole/edit"},
                    "subject": {"kind": "User", "name": "other@x.io"}, "whenEmpty": "Keep"}}));
    req.status = Some(
        serde_json::from_value(json!({"phase": "InProgress", "plan": plan, "removed": 1,
        "results": [{"id": 0, "kind": "RemoveBindingSubject", "object": "RoleBinding team/rb", "subject": "User p@x.io",
                     "outcome": "Removed", "message": "m", "at": "2026-01-01T00:00:01Z"}]}))
        .unwrap(),
    );
    let fresh = req.clone();
    let server = tokio::spawn(async move {
        fresh_read(&mut handle, &fresh).await;
        let mut rb = binding();
        rb["subjects"] = json!([{"kind": "User", "name": "other@x.io"}]);
        expect(
            &mut handle,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb",
            StatusCode::OK,
            rb,
        )
        .await;
        let kept = expect(
            &mut handle,
            Method::PUT,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb",
            StatusCode::OK,
            Value::Null,
        )
        .await;
        assert_eq!(kept["subjects"], json!([]), "kept empty per the plan's rule");
        let recorded =
            expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        let ids: Vec<i64> =
            recorded["status"]["results"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![0, 1]);
        expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            StatusCode::CREATED,
            Value::Null,
        )
        .await;
        let finished =
            expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        assert_eq!(finished["status"]["phase"], "Succeeded");
        assert_eq!(finished["status"]["removed"], 2);
        expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            StatusCode::CREATED,
            Value::Null,
        )
        .await;
    });
    reconcile(Arc::new(req), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn api_errors_past_the_bounded_time_end_failed() {
    // give_up_after 0: the first transient error is final.
    let (ctx, mut handle) = ctx(Duration::ZERO);
    let server = tokio::spawn(async move {
        fresh_read(&mut handle, &request()).await;
        planning_calls(&mut handle).await;
        expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        let err = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is sulking", "reason": "InternalError", "code": 500});
        expect(
            &mut handle,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb",
            StatusCode::INTERNAL_SERVER_ERROR,
            err,
        )
        .await;
        let failed = expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        let st: crate::crd::DeprovisionRequestStatus = serde_json::from_value(failed["status"].clone()).unwrap();
        assert_eq!(st.phase, Phase::Failed);
        assert_eq!(st.results[0].outcome, Outcome::Failed);
        assert!(
            st.results[0].message.contains("gave up after") && st.results[0].message.contains("etcd is sulking"),
            "{}",
            st.results[0].message
        );
        assert_eq!(st.retries, 1);
        expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            StatusCode::CREATED,
            Value::Null,
        )
        .await;
    });
    let obj = request();
    assert_eq!(obj.name_any(), "req");
    reconcile(Arc::new(obj), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_status_the_api_server_refuses_ends_failed_instead_of_looping() {
    let (ctx, mut handle) = ctx(Duration::from_secs(900));
    let server = tokio::spawn(async move {
        fresh_read(&mut handle, &request()).await;
        planning_calls(&mut handle).await;
        let invalid = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
            "message": "status.plan[0].x: Required value"});
        expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::UNPROCESSABLE_ENTITY, invalid).await;
        let minimal = expect(&mut handle, Method::PUT, &format!("{DPR}/req/status"), StatusCode::OK, Value::Null).await;
        assert_eq!(minimal["status"]["phase"], "Failed");
        assert!(minimal["status"]["message"].as_str().unwrap().contains("status.plan[0].x: Required value"));
        assert!(minimal["status"].get("plan").is_none());
    });
    let err = reconcile(Arc::new(request()), ctx).await.unwrap_err();
    assert!(matches!(err, super::Error::Unrecordable { .. }), "{err}");
    server.await.unwrap();
}
