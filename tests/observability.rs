//! What on-call people see of one call: its trace id from the caller's `traceparent` to the
//! record's annotation and the JSON log lines of the webhook and of the controller, and the
//! `/metrics` the alerts read (leader, verifications). The operator runs as a process with
//! `--log-format json` against a real kube-apiserver.

mod support;

use std::time::Duration;

use deprovisioner::crd::Phase;
use deprovisioner::fixtures::{self, user};
use deprovisioner::trace;
use kube::ResourceExt;
use serde_json::Value;
use support::*;

/// The JSON log lines of the operator.
fn json_lines(op: &Operator) -> Vec<Value> {
    op.log_text().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The value of `field` in the span named `span` of a JSON log line (its span list).
fn span_field<'a>(line: &'a Value, span: &str, field: &str) -> Option<&'a str> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == span).and_then(|s| s[field].as_str())
}

/// The line of the finished record `name`, once it is logged.
async fn finished_line(op: &Operator, name: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = json_lines(op)
            .into_iter()
            .find(|l| l["fields"]["event"] == "deprovision.finished" && l["fields"]["request"] == name);
        match found {
            Some(line) => return line,
            None if std::time::Instant::now() > deadline => {
                panic!("no finished line for {name}; log:\n{}", op.log_text())
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn scrape(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    http_client().get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_calls_trace_id_reaches_its_record_and_every_log_line_of_its_work() {
    let c = admin().await;
    let port = free_port();
    let op = Operator::start(OperatorOpts::default().args(&[
        "--log-format",
        "json",
        "--response-deadline",
        "8s",
        "--metrics-listen",
        &format!("127.0.0.1:{port}"),
    ]));
    let ns = unique("traced");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "pair", "view", vec![user("t@lumos.com"), user("stays@lumos.com")]).await;
    let app = namespace_policy(&c, "traced", &ns).await;

    // A caller that sends a W3C traceparent: its trace id is the call's.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    let auth = format!("Bearer {SECRET}");
    let body = serde_json::to_vec(&payload(&app, "t@lumos.com", &[])).unwrap();
    let headers =
        [("authorization", auth.as_str()), ("content-type", "application/json"), ("traceparent", traceparent.as_str())];
    let (status, answer, _) = op.post_raw("/webhooks/lumos/deprovision", &headers, body).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    let name = request_name(&answer);

    // The record carries it, as created.
    let r = get_request(&c, &name).await;
    assert_eq!(r.annotations().get(trace::ANNOTATION).map(String::as_str), Some(trace_id), "{:?}", r.metadata);

    // The controller's line of the finished record carries it, in its reconcile span (with the
    // request's name and UID), and so does every line of its work under that span.
    let finished = finished_line(&op, &name).await;
    let uid = r.uid().unwrap();
    assert_eq!(span_field(&finished, "reconcile", "trace_id"), Some(trace_id), "{finished}");
    assert_eq!(span_field(&finished, "reconcile", "request"), Some(name.as_str()), "{finished}");
    assert_eq!(span_field(&finished, "reconcile", "uid"), Some(uid.as_str()), "{finished}");
    let record: Value = serde_json::from_str(finished["fields"]["record"].as_str().unwrap()).unwrap();
    assert_eq!(record["status"]["phase"], "Succeeded", "{record}");

    // The webhook's answer line: the same trace id, the record it answered for.
    let lines = json_lines(&op);
    let answered = lines
        .iter()
        .find(|l| l["fields"]["message"] == "answered Lumos" && span_field(l, "webhook", "request") == Some(&name))
        .unwrap_or_else(|| panic!("no answer line for {name}:\n{}", op.log_text()));
    assert_eq!(span_field(answered, "webhook", "trace_id"), Some(trace_id), "{answered}");
    assert_eq!(span_field(answered, "webhook", "uid"), Some(uid.as_str()), "{answered}");
    // The line that says the call was recorded and waits: in the call's span too.
    let recorded = lines
        .iter()
        .find(|l| {
            span_field(l, "webhook", "request") == Some(&name)
                && l["fields"]["message"] == "request recorded; waiting for the result"
        })
        .unwrap_or_else(|| panic!("no recorded line for {name}:\n{}", op.log_text()));
    assert_eq!(span_field(recorded, "webhook", "trace_id"), Some(trace_id), "{recorded}");

    // A call without a traceparent (or with a broken one) gets a new id of its own.
    role_binding(&c, &ns, "second", "view", vec![user("u@lumos.com"), user("stays@lumos.com")]).await;
    let body = serde_json::to_vec(&payload(&app, "u@lumos.com", &[])).unwrap();
    let headers =
        [("authorization", auth.as_str()), ("content-type", "application/json"), ("traceparent", "00-broken-01")];
    let (status, answer, _) = op.post_raw("/webhooks/lumos/deprovision", &headers, body).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    let second = get_request(&c, &request_name(&answer)).await;
    let own = second.annotations().get(trace::ANNOTATION).cloned().unwrap_or_default();
    assert!(trace::is_valid(&own) && own != trace_id, "{own:?}");
    let finished = finished_line(&op, &second.name_any()).await;
    assert_eq!(span_field(&finished, "reconcile", "trace_id"), Some(own.as_str()), "{finished}");

    // /metrics: the only operator on this control plane holds the Lease, and counted both
    // verifications.
    let text = scrape(port).await;
    let verified = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"deprovisioner_verifications_total{verdict="verified"} "#))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(verified, Some(2.0), "{text}");
    assert!(text.lines().any(|l| l == "deprovisioner_leader 1"), "{text}");
}

/// A control plane of its own: the operator there is the only one, so its log has the line.
#[tokio::test]
async fn a_request_created_without_a_trace_id_is_traced_by_its_uid() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let port = free_port();
    let op = Operator::start(OperatorOpts::on(cl).args(&[
        "--log-format",
        "json",
        "--leader-election=false",
        "--metrics-listen",
        &format!("127.0.0.1:{port}"),
    ]));
    let ns = unique("untraced");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "pair", "view", vec![user("k@lumos.com"), user("stays@lumos.com")]).await;
    let app = namespace_policy(&c, "untraced", &ns).await;
    // As kubectl would: no annotation; the watch brings it to the controller.
    let name = unique("untraced");
    create_request(&c, &name, fixtures::request_spec(&app, "k@lumos.com").build()).await;
    let r = wait_terminal(&c, &name, Duration::from_secs(20)).await;
    assert_eq!(phase(&r), Phase::Succeeded);
    assert!(r.annotations().get(trace::ANNOTATION).is_none(), "the operator does not annotate: {:?}", r.metadata);
    let from_uid = r.uid().unwrap().replace('-', "");
    let finished = finished_line(&op, &name).await;
    assert_eq!(span_field(&finished, "reconcile", "trace_id"), Some(from_uid.as_str()), "{finished}");
    // Without leader election this replica always leads.
    let text = scrape(port).await;
    assert!(text.lines().any(|l| l == "deprovisioner_leader 1"), "{text}");
}
