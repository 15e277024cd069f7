use std::time::Instant;

use kube::runtime::watcher::{Error, Event};

use super::{deliver, export};
use crate::crd::DeprovisionRequest;
use crate::finished::Finished;
use crate::metrics::Metrics;
use crate::view::health::State;

fn request(name: &str) -> DeprovisionRequest {
    let mut r = crate::fixtures::request(name, crate::fixtures::request_spec("app", "p@lumos.com").build());
    r.metadata.uid = Some(name.into());
    r
}

#[test]
fn the_watch_moves_through_the_health_machine_and_the_calls_see_it() {
    let f = Finished::new();
    let t = Instant::now();
    assert_eq!(f.health().state, State::Listing, "not listed yet");
    assert_eq!(deliver(&f, Ok(&Event::Init), t).state, State::Listing);
    assert_eq!(deliver(&f, Ok(&Event::InitApply(request("a"))), t).state, State::Listing);
    let live = deliver(&f, Ok(&Event::InitDone), t);
    assert_eq!((live.state, live.listed_once, live.last_delivered), (State::Live, true, Some(t)));
    assert_eq!(f.health(), live, "what calls decide from");
    assert_eq!(deliver(&f, Err(&Error::NoResourceVersion), t).state, State::Resuming);
    assert_eq!(deliver(&f, Ok(&Event::Apply(request("b"))), t).state, State::Live, "it resumed");
    let unreadable = Error::WatchFailed(kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err()));
    assert_eq!(deliver(&f, Err(&unreadable), t).state, State::Lost, "an event was skipped");
    assert_eq!(deliver(&f, Ok(&Event::Delete(request("b"))), t).state, State::Lost, "until the next list");
    deliver(&f, Ok(&Event::Init), t);
    assert_eq!(deliver(&f, Ok(&Event::InitDone), t).state, State::Live);
}

#[test]
fn the_watch_state_is_exported_one_series_per_state() {
    let metrics = Metrics::new();
    export(&metrics, State::Live);
    export(&metrics, State::Resuming);
    let text = metrics.encode();
    for (state, value) in [("listing", 0), ("live", 0), ("resuming", 1), ("lost", 0)] {
        let line = format!("watch_state{{watch=\"requests\",state=\"{state}\"}} {value}");
        assert!(text.lines().any(|l| l.ends_with(&line)), "{line} in\n{text}");
    }
}
