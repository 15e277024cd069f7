use std::time::Duration;

use futures::FutureExt;
use futures::channel::mpsc;
use http::{Request, Response};
use kube::client::Body;
use kube::core::Status;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::crd::DeprovisionPolicy;
use crate::fixtures;
use crate::view::{Need, Reader, Since, View};

fn policy(name: &str) -> DeprovisionPolicy {
    fixtures::policy(
        name,
        json!({"application": {"appId": name}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
               "rules": [{"roleBindings": {"namespaces": ["team"]}}]}),
    )
}

/// Waits until the watch's task has applied what was sent.
async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert!(waited.await.is_ok(), "{what}");
}

/// The policies a plan reads from the view (`None`: it lists them instead).
fn names(view: &View) -> Option<Vec<String>> {
    let read = view.read(Since::Held, Need::POLICIES, Reader::Plan).now_or_never().expect("answered at once");
    read.ok().map(|s| s.policies()).map(|ps| {
        let mut n: Vec<String> = ps.iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    })
}

/// Plans read the policies from memory while the watch is current: not before it listed, not
/// during a relist, and not after an error until it delivers again (then it resumed where it
/// was, and nothing is missing). The replica is ready once the watch has listed, and stays so
/// through errors: a watch error alone must not take it out of its Service.
#[tokio::test]
async fn plans_read_the_policies_from_memory_while_the_watch_is_current() {
    let (tx, events) = mpsc::unbounded::<Result<Event<DeprovisionPolicy>, watcher::Error>>();
    let stop = CancellationToken::new();
    let (svc, _api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (rb, crb, ns) = (futures::stream::pending(), futures::stream::pending(), futures::stream::pending());
    let policies = View::fed(&Client::new(svc, "ops"), "ops", "sentinel", rb, crb, events, ns, None, &stop);
    let is_listed = || policies.policies.health().listed_once;
    let send = |ev: Result<Event<DeprovisionPolicy>, watcher::Error>| tx.unbounded_send(ev).unwrap();
    let error = |code: u16| {
        Err(watcher::Error::WatchError(Box::new(Status::failure("watch failed", "Expired").with_code(code))))
    };

    assert!(!is_listed() && names(&policies).is_none(), "nothing before the list");
    send(Ok(Event::Init));
    send(Ok(Event::InitApply(policy("one"))));
    send(Ok(Event::InitDone));
    until("listed", || names(&policies) == Some(vec!["one".into()])).await;
    assert!(is_listed());

    // An error: plans list until the watch delivers again, the replica stays ready.
    send(error(500));
    until("not current after an error", || names(&policies).is_none()).await;
    assert!(is_listed(), "still ready");
    send(Ok(Event::Apply(policy("two"))));
    until("current once it delivers again", || names(&policies) == Some(vec!["one".into(), "two".into()])).await;

    // An event the client could not read is dropped: plans list until the watch lists again.
    let unreadable = serde_json::from_str::<DeprovisionPolicy>("{").unwrap_err();
    send(Err(watcher::Error::WatchFailed(kube::Error::SerdeError(unreadable))));
    send(Ok(Event::Apply(policy("two"))));
    until("not current after a lost event", || names(&policies).is_none()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(names(&policies).is_none(), "a later change does not make up for the lost one");

    // 410 Gone: a relist; the new list is read once it ended.
    send(error(410));
    send(Ok(Event::Init));
    send(Ok(Event::InitApply(policy("two"))));
    until("not current during the relist", || names(&policies).is_none()).await;
    send(Ok(Event::InitDone));
    until("the new list", || names(&policies) == Some(vec!["two".into()])).await;
    assert!(is_listed());
    stop.cancel();
}
