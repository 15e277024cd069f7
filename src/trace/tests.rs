use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_gives_its_trace_id() {
    assert_eq!(from_traceparent(VALID).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    // Surrounding whitespace is no part of the value; the flags may be anything hex.
    assert_eq!(from_traceparent(&format!(" {VALID} ")).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert_eq!(from_traceparent(unsampled).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    // A later version may append fields after the flags.
    let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
    assert_eq!(from_traceparent(later).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
}

#[test]
fn an_invalid_traceparent_gives_nothing() {
    for bad in [
        "",
        "garbage",
        // Version ff is forbidden; version 00 has exactly four fields.
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        // All-zero ids.
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // Upper case, wrong lengths, non-hex.
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        assert_eq!(from_traceparent(bad), None, "{bad:?}");
    }
}

#[test]
fn a_call_without_a_valid_traceparent_gets_a_new_random_id() {
    assert_eq!(of_call(Some(VALID)), "4bf92f3577b34da6a3ce929d0e0e4736");
    let (a, b) = (of_call(None), of_call(Some("nonsense")));
    assert!(is_valid(&a) && is_valid(&b), "{a} {b}");
    assert_ne!(a, b);
}

#[test]
fn a_record_carries_its_annotation_else_its_uid() {
    let mut obj = crate::fixtures::request("r", crate::fixtures::request_spec("app", "a@example.com").build());
    obj.metadata.uid = Some("5D2B0A4C-1e2f-4a3b-9c8d-7e6f5a4b3c2d".into());
    assert_eq!(of_request(&obj), "5d2b0a4c1e2f4a3b9c8d7e6f5a4b3c2d");
    obj.metadata.annotations = Some([(ANNOTATION.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736".to_string())].into());
    assert_eq!(of_request(&obj), "4bf92f3577b34da6a3ce929d0e0e4736");
    // An annotation someone edited into something else is not taken.
    obj.metadata.annotations = Some([(ANNOTATION.to_string(), "not-an-id".to_string())].into());
    assert_eq!(of_request(&obj), "5d2b0a4c1e2f4a3b9c8d7e6f5a4b3c2d");
    // A UID of another form still gives a valid id, always the same.
    assert!(is_valid(&of_uid("not-a-uuid")));
    assert_eq!(of_uid("not-a-uuid"), of_uid("not-a-uuid"));
}

#[tokio::test]
async fn the_scope_tells_the_call_its_id() {
    let seen = scope("4bf92f3577b34da6a3ce929d0e0e4736".into(), async { current() }).await;
    assert_eq!(seen, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(current(), seen);
}
