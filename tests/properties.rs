//! Property tests (proptest): the fuzzing of the hardening issue, on stable Rust so CI runs it
//! with `cargo test --all-targets`. Each property runs a bounded number of cases by default
//! (see [`cases`]); `PROPTEST_CASES=20000 cargo test --test properties` runs longer. Failures
//! proptest finds are saved under `proptest-regressions/` and replayed first on every run; the
//! ones found while writing this file are also plain `#[test]`s at the end.
//!
//! Invariants: nothing panics; a parsed payload has a target email and an application; escaped
//! values never change the structure they are put into; URL checks keep plain http on loopback,
//! metadata addresses out and templates out of the host; the planner removes only subjects the
//! policy selects (`entitlements` rules included: exactly the entitlement the connector's
//! permission names, within the rule's bounds), never a protected one, and never the same
//! subject twice; planning from only the
//! bindings naming the target (what the index by subject returns) plans what planning from every
//! binding plans.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use deprovisioner::crd::{Action, BindingScope, DeprovisionPolicy, DeprovisionRequestSpec, RequestSource, SubjectRef};
use deprovisioner::egress::check_url;
use deprovisioner::fixtures::{self, subject};
use deprovisioner::plan::subject::{Principal, Protected, Wanted, is_system_name};
use deprovisioner::plan::template::{
    TemplateError, json_escape, render, render_escaped, render_url, scim_filter, url_escape, validate,
};
use deprovisioner::plan::{Observed, PlanError, compute, glob_match, matching_policies, principals, validate_policy};
use deprovisioner::webhook::payload::parse;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use url::{Host, Url};

/// `n` cases, unless `PROPTEST_CASES` asks for another number (proptest reads it itself).
fn cases(n: u32) -> ProptestConfig {
    let config = ProptestConfig::default();
    // Failures are saved (and replayed first) in proptest-regressions/, at the crate's root.
    let persistence = FileFailurePersistence::Direct("proptest-regressions/properties.txt");
    let config = ProptestConfig { failure_persistence: Some(Box::new(persistence)), ..config };
    if std::env::var_os("PROPTEST_CASES").is_some() { config } else { ProptestConfig { cases: n, ..config } }
}

/// Any string, biased towards the characters that matter here: quotes, escapes, braces,
/// separators, whitespace, controls and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9@.:/?#%{}\"'\\\\\t\n\r \u{0}\u{7f}\u{2028}éß€😀-]{0,24}",
        select(vec!["", " ", "\"", "\\", "\\\"", "{{", "}}", "%", "%2F", "../", "a/b", "\u{0}", "é", "😀", ".", ".."])
            .prop_map(String::from),
    ]
}

/// A value a template can insert: `lookup` drops blank ones, so something not only whitespace.
fn value() -> impl Strategy<Value = String> {
    text().prop_filter("templates refuse blank values", |v| !v.trim().is_empty())
}

// --- 1. payload parsing ----------------------------------------------------------------------

/// JSON trees of any shape, with keys the payload parser looks for.
fn json_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        select(vec!["", " ", "peter@lumos.com", " Peter@Lumos.com ", "a@b", "@", "a@", "a@b@c", "a b@c", "demo_app"])
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let key = prop_oneof![
        select(vec![
            "application",
            "app_id",
            "instance_id",
            "user_friendly_label",
            "permissions",
            "value",
            "label",
            "type",
            "source",
            "user",
            "target_user",
            "email",
            "given_name",
            "family_name",
            "request_comment",
            "custom_fields",
        ])
        .prop_map(String::from),
        text(),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Payloads close to Lumos's shape, each part present, absent, null or of a wrong type.
fn near_payload() -> impl Strategy<Value = Value> {
    let s = || {
        prop_oneof![
            3 => select(vec!["peter@lumos.com", " Peter@Lumos.com ", "", "  ", "a@b", "a@b@c", "no-at", "a b@c", "x"])
                .prop_map(Value::from),
            1 => text().prop_map(Value::from),
            1 => Just(Value::Null),
            1 => json_tree(),
        ]
    };
    let person = prop::option::of((prop::option::of(s()), prop::option::of(s()))).prop_map(|p| {
        p.map(|(email, given)| {
            let mut o = serde_json::Map::new();
            email.map(|e| o.insert("email".into(), e));
            given.map(|g| o.insert("given_name".into(), g));
            Value::Object(o)
        })
    });
    (
        prop::option::of((prop::option::of(s()), prop::option::of(s()))),
        person.clone(),
        person,
        prop::option::of(prop::collection::vec(prop::option::of(s()), 0..4)),
        prop::option::of(prop::collection::btree_map("[a-z_]{1,8}", json_tree(), 0..4)),
    )
        .prop_map(|(app, user, target, perms, custom)| {
            let mut o = serde_json::Map::new();
            if let Some((app_id, instance_id)) = app {
                let mut a = serde_json::Map::new();
                app_id.map(|v| a.insert("app_id".into(), v));
                instance_id.map(|v| a.insert("instance_id".into(), v));
                o.insert("application".into(), Value::Object(a));
            }
            user.map(|u| o.insert("user".into(), u));
            target.map(|t| o.insert("target_user".into(), t));
            if let Some(perms) = perms {
                let list = perms.into_iter().map(|v| v.map_or(json!({}), |v| json!({"value": v}))).collect();
                o.insert("permissions".into(), Value::Array(list));
            }
            custom.map(|c| o.insert("custom_fields".into(), json!(c)));
            Value::Object(o)
        })
}

/// What every parsed spec holds, and where its target email came from.
fn check_parsed(body: &[u8], spec: &DeprovisionRequestSpec) {
    let email = &spec.target_user.email;
    assert!(!email.is_empty() && email.trim() == email, "target email {email:?}");
    assert_eq!(email.matches('@').count(), 1, "target email {email:?}");
    assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()), "target email {email:?}");
    let has = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    assert!(has(&spec.application.app_id) || has(&spec.application.instance_id), "{:?}", spec.application);
    assert!(spec.permissions.iter().all(|p| !p.value.trim().is_empty()));
    // The email is the one Lumos sent: target_user's, or user's when target_user is absent.
    let raw: Value = serde_json::from_slice(body).expect("parsed, so JSON");
    let from = if raw.get("target_user").is_some() { "target_user" } else { "user" };
    assert_eq!(raw[from]["email"].as_str().map(str::trim), Some(email.as_str()), "{raw}");
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn payload_parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256), dry in any::<bool>()) {
        if let Ok(spec) = parse(&body, dry) {
            check_parsed(&body, &spec);
        }
    }

    #[test]
    fn payload_parse_never_panics_on_json(v in prop_oneof![json_tree(), near_payload()], dry in any::<bool>()) {
        let body = serde_json::to_vec(&v).unwrap();
        if let Ok(spec) = parse(&body, dry) {
            check_parsed(&body, &spec);
            prop_assert_eq!(spec.dry_run, dry);
        }
    }
}

// --- 2. templates and escaping ---------------------------------------------------------------

/// Fields a template may name, known or not, well or badly written.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "target_user.email",
            "target_user.email_local",
            "target_user.given_name",
            "target_user.family_name",
            "user.email",
            "user.given_name",
            "application.app_id",
            "application.instance_id",
            "custom_fields.x",
            "custom_fields.h",
            "custom_fields.",
            "custom_fields.missing",
            " target_user.email ",
            "target_user",
            "nope.x",
            "",
        ])
        .prop_map(String::from),
        text(),
    ]
}

/// Templates built from text, fields and stray braces.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        text(),
        field().prop_map(|f| format!("{{{{{f}}}}}")),
        select(vec!["{{", "}}", "{", "}", "{{{", "}}}", "{ {", "} }"]).prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

/// A request with every field a template can name filled in with hostile values.
fn spec_with(values: [String; 6]) -> DeprovisionRequestSpec {
    let [email_local, given, app, x, h, requester] = values;
    let mut spec = fixtures::request_spec(&app, &format!("{email_local}@lumos.com"))
        .instance("i1")
        .given_name(&given)
        .family_name("Parker")
        .custom_field("x", &x)
        .custom_field("h", &h)
        .requested_by(&requester)
        .build();
    spec.target_user.email = format!("{email_local}@lumos.com");
    spec
}

fn spec_strategy() -> impl Strategy<Value = DeprovisionRequestSpec> {
    [value(), value(), value(), value(), value(), value()].prop_map(spec_with)
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn templates_never_panic_and_agree(t in template(), spec in spec_strategy()) {
        let plain = render(&t, &spec);
        let identity = render_escaped(&t, &spec, |v| v.to_string());
        prop_assert_eq!(&plain, &identity);
        let _ = render_escaped(&t, &spec, json_escape);
        let _ = render_escaped(&t, &spec, url_escape);
        if plain.is_ok() {
            prop_assert!(validate(&t).is_ok(), "rendered but does not validate: {:?}", t);
        }
    }

    #[test]
    fn json_escape_round_trips_inside_a_string_literal(v in text()) {
        let escaped = json_escape(&v);
        let back: String = serde_json::from_str(&format!("\"{escaped}\"")).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn json_escaped_values_never_change_a_body_s_structure(spec in spec_strategy()) {
        let body = r#"{"user": "{{target_user.email}}", "ids": ["{{custom_fields.x}}", "lit"], "n": 1, "who": {"h": "x-{{custom_fields.h}}-y"} }"#;
        let rendered = render_escaped(body, &spec, json_escape).unwrap();
        let parsed: Value = serde_json::from_str(&rendered).unwrap();
        let want = json!({
            "user": spec.target_user.email,
            "ids": [spec.custom_fields["x"], "lit"],
            "n": 1,
            "who": {"h": format!("x-{}-y", spec.custom_fields["h"])},
        });
        prop_assert_eq!(parsed, want);
    }

    #[test]
    fn url_escaped_values_stay_in_their_path_segment(spec in spec_strategy(), v in text()) {
        // url_escape itself: only unreserved-safe characters, and it decodes back.
        let e = url_escape(&v);
        prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'%'), "{:?}", e);
        prop_assert_eq!(percent_encoding::percent_decode_str(&e).decode_utf8().unwrap(), v.as_str());

        // Rendered as the planner renders URLs: `.` and `..` are refused (a URL path reads even
        // `%2E%2E` as a step up); every other value stays inside its one segment.
        let base = Url::parse("https://api.example:8443/v1/users/x/disable?tenant=t#frag").unwrap();
        let t = "https://api.example:8443/v1/users/{{custom_fields.x}}/disable?tenant=t#frag";
        let x = spec.custom_fields["x"].as_str();
        if x == "." || x == ".." {
            let refused = matches!(render_url(t, &spec), Err(TemplateError::DotSegment { .. }));
            prop_assert!(refused, "{:?} was not refused", x);
            return Ok(());
        }
        let rendered = render_url(t, &spec).unwrap();
        prop_assert_eq!(&rendered, &render_escaped(t, &spec, url_escape).unwrap());
        let url = Url::parse(&rendered).unwrap();
        prop_assert_eq!(url.scheme(), base.scheme());
        prop_assert_eq!(url.host(), base.host());
        prop_assert_eq!(url.port(), base.port());
        prop_assert_eq!(url.username(), "");
        prop_assert_eq!(url.query(), base.query());
        prop_assert_eq!(url.fragment(), base.fragment());
        let segments: Vec<&str> = url.path_segments().unwrap().collect();
        prop_assert_eq!(segments.len(), base.path_segments().unwrap().count());
        let decoded = percent_encoding::percent_decode_str(segments[2]).decode_utf8().unwrap();
        prop_assert_eq!(decoded.as_ref(), spec.custom_fields["x"].as_str());
    }

    #[test]
    fn scim_filters_compare_one_json_string(attr in select(vec!["userName", "emails.value", "displayName"]), v in text()) {
        let filter = scim_filter(attr, &v);
        let prefix = format!("{attr} eq ");
        prop_assert!(filter.starts_with(&prefix), "{:?}", filter);
        // The rest is exactly one JSON string (from_str refuses trailing data), decoding to v.
        let literal: String = serde_json::from_str(&filter[prefix.len()..]).unwrap();
        prop_assert_eq!(literal, v);
    }
}

// --- 3. URL checks ---------------------------------------------------------------------------

/// Link-local or metadata, decided here independently of `egress`.
fn is_metadata_or_link_local(ip: IpAddr) -> bool {
    let v4 = |o: [u8; 4]| o[0] == 169 && o[1] == 254;
    match ip {
        IpAddr::V4(a) => v4(a.octets()),
        IpAddr::V6(a) => {
            let s = a.segments();
            (s[0] & 0xffc0) == 0xfe80
                || s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
                || (s[..6] == [0, 0, 0, 0, 0, 0xffff] && v4(a.octets()[12..].try_into().unwrap()))
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 127,
        IpAddr::V6(a) => {
            a.segments() == [0, 0, 0, 0, 0, 0, 0, 1] || a.to_ipv4_mapped().is_some_and(|m| m.octets()[0] == 127)
        }
    }
}

fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(a) => Some(IpAddr::V4(a)),
        Host::Ipv6(a) => Some(IpAddr::V6(a)),
        Host::Domain(_) => None,
    }
}

/// URL (templates) written to get past a checker: odd schemes and separators, userinfo, hosts
/// in every notation, percent-encoding, case, ports and `{{field}}` anywhere.
fn hostile_url() -> impl Strategy<Value = String> {
    let scheme = select(vec!["https", "http", "HTTPS", "HtTp", "ftp", "file", "javascript", "", "https\t", "h\nttp"]);
    let sep = select(vec!["://", ":/", ":", ":\\\\", ":\\/", ":/\\", "://\t", ":///", "//"]);
    let userinfo = select(vec![
        "",
        "",
        "",
        "user@",
        "user:pw@",
        ":@",
        "@",
        "localhost@",
        "127.0.0.1:80@",
        "%40@",
        "{{custom_fields.x}}@",
        "a@b@",
    ]);
    let host = prop_oneof![
        select(vec![
            "localhost",
            "LOCALHOST",
            "LocalHost.",
            "localhost.",
            "127.0.0.1",
            "127.1",
            "0x7f.1",
            "2130706433",
            "0177.0.0.1",
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "169.254.169.254",
            "169.254.169.254.",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "2852039166",
            "[fe80::1]",
            "[FE80::abcd]",
            "[febf::1]",
            "[fec0::1]",
            "[fd00:ec2::254]",
            "[FD00:EC2:0::254]",
            "[::ffff:169.254.169.254]",
            "[::ffff:a9fe:a9fe]",
            "h.example",
            "H.Example",
            "localhost.evil.example",
            "%6c%6f%63%61%6c%68%6f%73%74",
            "%31%36%39.254.169.254",
            "127.0.0.1.nip.io",
            "{{target_user.email}}",
            "a{{custom_fields.h}}.example",
            "{{custom_fields.h}}",
            "{\t{custom_fields.h}}",
            "%7b%7bcustom_fields.h%7d%7d",
            "{{ custom_fields.h }}",
            "h.example{{custom_fields.h}}",
            "[::]",
            "0",
            "",
            "[",
            "[::1",
            "xn--nxasmq6b",
            "ex\u{e4}mple.com",
        ])
        .prop_map(String::from),
        "[a-zA-Z0-9.:%\\[\\]{}@-]{0,16}",
    ];
    let port = select(vec!["", "", ":80", ":0", ":443", ":65535", ":99999", ":", ":{{custom_fields.x}}", ":8a"]);
    let rest = select(vec![
        "",
        "/",
        "/x",
        "/u/{{target_user.email}}",
        "?q={{custom_fields.x}}",
        "#{{custom_fields.h}}",
        "\\x",
        "/@evil",
        "/{{custom_fields.x}}/{{custom_fields.h}}",
        "?@169.254.169.254",
        "/../..",
    ]);
    prop_oneof![
        8 => (scheme, sep, userinfo, host, port, rest).prop_map(|(s, sep, u, h, p, r)| format!("{s}{sep}{u}{h}{p}{r}")),
        1 => text(),
        1 => "[a-zA-Z:/\\\\@\\[\\]{}%.0-9\t]{0,40}",
    ]
}

/// The request values a URL template may receive: plain, and shaped like a host or a path.
fn url_values() -> impl Strategy<Value = String> {
    prop_oneof![
        value(),
        select(vec!["evil.example", "169.254.169.254", "a@evil.example", "/evil", "x:1", "[::1]", "..", ".", "%2e"])
            .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn url_checks_keep_calls_where_they_may_go(
        raw in hostile_url(),
        allow_link_local in any::<bool>(),
        values in [url_values(), url_values(), url_values(), url_values(), url_values(), url_values()],
    ) {
        let Ok((url, egress)) = check_url(&raw, allow_link_local) else { return Ok(()) };
        prop_assert!(url.username().is_empty() && url.password().is_none(), "userinfo allowed: {:?}", raw);
        prop_assert!(matches!(url.scheme(), "http" | "https"), "{:?}", raw);
        prop_assert_eq!(egress.loopback_only, url.scheme() == "http");
        prop_assert_eq!(egress.allow_link_local, allow_link_local);
        let ip = host_ip(&url);
        if url.scheme() == "http" {
            let local = match (&ip, url.host()) {
                (Some(ip), _) => is_loopback(*ip),
                (None, Some(Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
                _ => false,
            };
            prop_assert!(local, "plain http beyond loopback: {:?} -> {}", raw, url);
        }
        if !allow_link_local && let Some(ip) = ip {
            prop_assert!(!is_metadata_or_link_local(ip), "metadata address allowed: {:?} -> {}", raw, url);
        }
        // A template accepted by check_url may only choose what comes after the host: rendered
        // with any request values, the call goes to the same scheme, host and port.
        if validate(&raw).is_ok() {
            let spec = spec_with(values);
            if let Ok(rendered) = render_url(&raw, &spec) {
                let r = Url::parse(&rendered);
                prop_assert!(r.is_ok(), "{:?} rendered to {:?}, not a URL", raw, rendered);
                let r = r.unwrap();
                prop_assert_eq!(
                    (r.scheme(), r.host_str(), r.port_or_known_default()),
                    (url.scheme(), url.host_str(), url.port_or_known_default()),
                    "a request value moved the call: {:?} rendered to {:?}", raw, rendered
                );
            }
        }
    }
}

// --- 4. the planner --------------------------------------------------------------------------

const TARGET: &str = "Peter@Lumos.com";
const OPERATOR: (&str, &str) = ("deprovisioner", "deprovisioner");
const NAMESPACES: [&str; 5] = ["team-a", "team-b", "kube-system", "deprovisioner", "other"];

/// Subjects a binding may hold: the target user in several spellings, other people, and every
/// kind of protected identity.
fn subject_pool() -> Vec<Subject> {
    let mut pool = Vec::new();
    for name in [
        TARGET,
        "peter@lumos.com",
        "PETER@LUMOS.COM",
        "oidc:peter@lumos.com",
        "oidc:Peter@Lumos.com",
        "mj@lumos.com",
        "pparker",
        "system:admin",
        "System:Peter@Lumos.com",
        "system:serviceaccount:kube-system:x",
        "system:serviceaccount:kube-system:pparker",
        "SYSTEM:serviceaccount:kube-system:pparker",
        "system:serviceaccount:team-a:pparker",
        "system:serviceaccount:deprovisioner:deprovisioner",
        "system:serviceaccount:team-a:pparker:extra",
        "system:serviceaccount::pparker",
    ] {
        pool.push(subject("User", name, None));
    }
    for name in ["system:masters", "System:Masters", "system:authenticated", "pparker", TARGET, "peter@lumos.com"] {
        pool.push(subject("Group", name, None));
    }
    for (ns, name) in [
        (None, "pparker"),
        (Some("team-a"), "pparker"),
        (Some("team-b"), "pparker"),
        (Some(""), "pparker"),
        (Some("kube-system"), "pparker"),
        (Some("kube-system"), "x"),
        (None, "deprovisioner"),
        (Some("deprovisioner"), "deprovisioner"),
    ] {
        pool.push(subject("ServiceAccount", name, ns));
    }
    pool.push(subject("Weird", TARGET, None));
    pool
}

/// (namespace, name, role kind, role name, labelled, deleting, subjects)
type RbSeed = (usize, usize, bool, usize, bool, bool, Vec<usize>);

fn binding_seed() -> impl Strategy<Value = RbSeed> {
    let n = subject_pool().len();
    (
        0..NAMESPACES.len(),
        0..4usize,
        any::<bool>(),
        0..4usize,
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::collection::vec(prop_oneof![0..n, 0..5usize], 0..5),
    )
}

const BINDING_NAMES: [&str; 4] = ["edit", "view", "peter-admin", "bots"];
const ROLES: [&str; 4] = ["edit", "view", "admin", "cluster-admin"];

fn observed_from(rbs: Vec<RbSeed>, crbs: Vec<RbSeed>) -> Observed {
    let pool = subject_pool();
    let mut seen = BTreeSet::new();
    let mut role_bindings = Vec::new();
    for (i, (ns, name, role_kind, role, labelled, deleting, subjects)) in rbs.into_iter().enumerate() {
        let (ns, name) = (NAMESPACES[ns], BINDING_NAMES[name]);
        if !seen.insert((ns, name)) {
            continue; // one binding per namespace and name, as in a cluster
        }
        let mut b = fixtures::role_binding(ns, name)
            .role_ref(if role_kind { "Role" } else { "ClusterRole" }, ROLES[role])
            .labels(if labelled { &[("lumos", "demo")] } else { &[] })
            .subjects(subjects.iter().map(|&s| pool[s].clone()))
            .uid(&format!("uid-rb-{i}"))
            .build();
        if deleting {
            b.metadata.deletion_timestamp = Some(Time(Default::default()));
        }
        role_bindings.push(b.into());
    }
    let mut seen = BTreeSet::new();
    let mut cluster_role_bindings = Vec::new();
    for (i, (_, name, _, role, labelled, deleting, subjects)) in crbs.into_iter().enumerate() {
        let name = BINDING_NAMES[name];
        if !seen.insert(name) {
            continue;
        }
        let mut b = fixtures::cluster_role_binding(name)
            .role(ROLES[role])
            .labels(if labelled { &[("lumos", "demo")] } else { &[] })
            .subjects(subjects.iter().map(|&s| pool[s].clone()))
            .uid(&format!("uid-crb-{i}"))
            .build();
        if deleting {
            b.metadata.deletion_timestamp = Some(Time(Default::default()));
        }
        cluster_role_bindings.push(b.into());
    }
    let namespaces = NAMESPACES.iter().map(|n| fixtures::namespace(n, &[("team", n)])).collect();
    Observed { namespaces, role_bindings, cluster_role_bindings, clocks: None }
}

/// Subject templates: the target user (any case, with a prefix), names typed by the requester
/// (possibly `system:` ones), ServiceAccounts (possibly protected ones).
fn subject_template() -> impl Strategy<Value = Value> {
    let user = |ci| json!({"kind": "User", "name": "{{target_user.email}}", "caseInsensitive": ci});
    let oidc = |ci| json!({"kind": "User", "name": "{{target_user.email}}", "prefix": "oidc:", "caseInsensitive": ci});
    let group = |ci| json!({"kind": "Group", "name": "{{custom_fields.group}}", "caseInsensitive": ci});
    let sa = |ns| json!({"kind": "ServiceAccount", "name": "{{custom_fields.username}}", "namespace": ns});
    prop_oneof![
        6 => any::<bool>().prop_map(user),
        2 => any::<bool>().prop_map(oidc),
        1 => Just(json!({"kind": "User", "name": "{{target_user.email}}", "prefix": "system:"})),
        1 => Just(json!({"kind": "User", "name": "{{custom_fields.username}}", "allowedNames": ["p*", "x"]})),
        1 => Just(json!({"kind": "User", "name": "system:serviceaccount:team-a:{{custom_fields.username}}"})),
        2 => any::<bool>().prop_map(group),
        2 => select(NAMESPACES.to_vec()).prop_map(sa),
        1 => Just(json!({"kind": "ServiceAccount", "name": "{{custom_fields.username}}",
                         "namespace": "{{custom_fields.ns}}", "allowedNamespaces": ["team-*", "kube-*"]})),
    ]
}

fn some_of<T: Clone + std::fmt::Debug + 'static>(all: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    let n = all.len();
    prop::sample::subsequence(all, 0..=n)
}

fn role_ref_filter() -> impl Strategy<Value = Option<Value>> {
    prop::option::of((prop::option::of(select(vec!["Role", "ClusterRole"])), select(ROLES.to_vec())).prop_map(
        |(kind, name)| match kind {
            Some(k) => json!({"kind": k, "name": name}),
            None => json!({"name": name}),
        },
    ))
}

/// Rules from the templates a policy is written with.
fn rule() -> impl Strategy<Value = Value> {
    let perms = prop_oneof![
        6 => Just(vec![]),
        1 => Just(vec!["Admin"]),
        1 => Just(vec!["team-*"]),
        1 => Just(vec!["Admin", "kube-system"]),
    ];
    let body = prop_oneof![
        (some_of(NAMESPACES.to_vec()), some_of(BINDING_NAMES.to_vec()), role_ref_filter(), any::<bool>()).prop_map(
            |(nss, names, role_ref, labelled)| {
                let mut rb = json!({"namespaces": nss, "names": names});
                if nss.is_empty() {
                    rb["namespaceSelector"] = json!({"matchLabels": {"team": "team-b"}});
                }
                if let Some(r) = role_ref {
                    rb["roleRef"] = r;
                }
                if labelled {
                    rb["selector"] = json!({"matchLabels": {"lumos": "demo"}});
                }
                json!({"roleBindings": rb})
            }
        ),
        (some_of(NAMESPACES.to_vec()), prop::bool::weighted(0.1)).prop_map(|(mut nss, from_perm)| {
            if nss.is_empty() && !from_perm {
                nss.push("team-a");
            }
            json!({"namespaceAccess": {"namespaces": nss, "fromPermissionValue": from_perm}})
        }),
        (some_of(BINDING_NAMES.to_vec()), role_ref_filter(), any::<bool>()).prop_map(|(names, role_ref, labelled)| {
            let mut crb = json!({"names": names});
            if let Some(r) = role_ref {
                crb["roleRef"] = r;
            }
            if labelled || (names.is_empty() && crb.get("roleRef").is_none()) {
                crb["selector"] = json!({"matchLabels": {"lumos": "demo"}});
            }
            json!({"clusterRoleBindings": crb})
        }),
    ];
    (perms, body).prop_map(|(perms, mut body)| {
        if !perms.is_empty() {
            body["permissions"] = json!(perms);
        }
        body
    })
}

fn policies() -> impl Strategy<Value = Vec<DeprovisionPolicy>> {
    let one = (
        select(vec!["demo_app", "demo_app", "demo_app", "other_app"]),
        prop::collection::vec(subject_template(), 1..3),
        prop::collection::vec(rule(), 1..4),
        select(vec!["Delete", "Keep"]),
    );
    prop::collection::vec(one, 1..4).prop_map(|ps| {
        ps.into_iter()
            .enumerate()
            .map(|(i, (app, subjects, rules, empty))| {
                let spec = json!({"application": {"appId": app}, "subjects": subjects, "rules": rules, "emptyBindings": empty});
                let mut p = fixtures::policy(&format!("policy-{i}"), spec);
                p.metadata.uid = Some(format!("uid-policy-{i}"));
                p
            })
            .collect()
    })
}

/// An `entitlements` rule as a policy for the Lumos connector writes it: bounds by namespace
/// name or label and cluster-wide, and role name patterns.
fn entitlements_rule() -> impl Strategy<Value = Value> {
    let roles = prop_oneof![2 => Just(vec![]), 1 => some_of(vec!["edit", "view", "cluster-*"])];
    (some_of(vec!["team-a", "team-b", "kube-system"]), any::<bool>(), prop::bool::weighted(0.7), roles).prop_map(
        |(nss, by_label, cluster_wide, roles)| {
            let mut e = json!({"namespaces": nss, "clusterWide": cluster_wide, "roles": roles});
            if by_label || (nss.is_empty() && !cluster_wide) {
                e["namespaceSelector"] = json!({"matchLabels": {"team": "team-b"}});
            }
            json!({"entitlements": e})
        },
    )
}

/// Permission values naming entitlements, as the Lumos connector sends them (and a few it never
/// would: a Role cluster-wide, a namespace that is no DNS label).
const ENTITLEMENT_VALUES: [&str; 8] = [
    "namespace_role/team-a/ClusterRole:edit",
    "namespace_role/team-b/ClusterRole:view",
    "namespace_role/team-b/Role:edit",
    "namespace_role/kube-system/ClusterRole:edit",
    "cluster_role//ClusterRole:edit",
    "cluster_role//ClusterRole:cluster-admin",
    "cluster_role//Role:view",
    "namespace_role/Team A/ClusterRole:edit",
];

/// The app the connector's policies cover.
const CONNECTOR_APP: &str = "kubernetes";

/// Policies for the Lumos connector's app: `entitlements` rules, with now and then a rule of
/// another kind beside them.
fn connector_policies() -> impl Strategy<Value = Vec<DeprovisionPolicy>> {
    let one = (
        select(vec![CONNECTOR_APP, CONNECTOR_APP, CONNECTOR_APP, "other_app"]),
        prop::collection::vec(subject_template(), 1..3),
        prop::collection::vec(prop_oneof![3 => entitlements_rule(), 1 => rule()], 1..3),
        select(vec!["Delete", "Keep"]),
    );
    prop::collection::vec(one, 1..3).prop_map(|ps| {
        ps.into_iter()
            .enumerate()
            .map(|(i, (app, subjects, rules, empty))| {
                let spec = json!({"application": {"appId": app}, "subjects": subjects, "rules": rules, "emptyBindings": empty});
                let mut p = fixtures::policy(&format!("connector-{i}"), spec);
                p.metadata.uid = Some(format!("uid-connector-{i}"));
                p
            })
            .collect()
    })
}

/// A request from the connector's `unassign_entitlement`: one permission value naming one
/// entitlement (now and then one it never sends).
fn connector_request() -> impl Strategy<Value = DeprovisionRequestSpec> {
    (select(ENTITLEMENT_VALUES.to_vec()), select(vec!["pparker", "x", "deprovisioner"])).prop_map(
        |(value, username)| {
            fixtures::request_spec(CONNECTOR_APP, TARGET)
                .permissions([value])
                .source(RequestSource::LumosConnector)
                .custom_field("username", username)
                .custom_field("group", "pparker")
                .custom_field("ns", "team-a")
                .build()
        },
    )
}

/// Bindings of the roles the connector lists most (edit and view, mostly ClusterRoles) in the
/// namespaces its entitlements name.
fn connector_binding_seed() -> impl Strategy<Value = RbSeed> {
    let n = subject_pool().len();
    (
        0..3usize,
        0..4usize,
        prop::bool::weighted(0.3),
        prop_oneof![3 => 0..2usize, 1 => 0..4usize],
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::collection::vec(prop_oneof![0..n, 0..5usize], 0..5),
    )
}

/// A request, the cluster's policies and the bindings (RoleBindings, ClusterRoleBindings) the
/// planner sees.
type World = (DeprovisionRequestSpec, Vec<DeprovisionPolicy>, Vec<RbSeed>, Vec<RbSeed>);

/// A Lumos call for `demo_app`.
fn demo_world() -> impl Strategy<Value = World> {
    (request(), policies(), prop::collection::vec(binding_seed(), 0..10), prop::collection::vec(binding_seed(), 0..5))
}

/// A request from the connector under `entitlements` rules.
fn connector_world() -> impl Strategy<Value = World> {
    (
        connector_request(),
        connector_policies(),
        prop::collection::vec(connector_binding_seed(), 0..10),
        prop::collection::vec(connector_binding_seed(), 0..5),
    )
}

/// Most worlds are Lumos calls for `demo_app`; some are connector requests.
fn world() -> impl Strategy<Value = World> {
    prop_oneof![3 => demo_world(), 1 => connector_world()]
}

fn request() -> impl Strategy<Value = DeprovisionRequestSpec> {
    (
        prop_oneof![3 => Just(vec![]), 1 => some_of(vec!["Admin", "team-a", "kube-system", "Bad Name"])],
        select(vec!["pparker", "x", "deprovisioner", "PParker"]),
        select(vec!["pparker", "system:masters", "Peter@Lumos.com"]),
        select(vec!["team-a", "kube-system", "deprovisioner"]),
    )
        .prop_map(|(perms, username, group, ns)| {
            fixtures::request_spec("demo_app", TARGET)
                .permissions(perms)
                .custom_field("username", username)
                .custom_field("group", group)
                .custom_field("ns", ns)
                .build()
        })
}

/// Whether a rule applies to the request (a permission it names, or every permission).
fn rule_applies(rule: &deprovisioner::crd::AccessRule, spec: &DeprovisionRequestSpec) -> Vec<Option<String>> {
    if spec.permissions.is_empty() {
        return vec![None];
    }
    spec.permissions
        .iter()
        .filter(|p| rule.permissions.is_empty() || rule.permissions.iter().any(|pat| glob_match(pat, &p.value)))
        .map(|p| Some(p.value.clone()))
        .collect()
}

fn role_ref_ok(filter: Option<&deprovisioner::crd::RoleRefFilter>, kind: &str, name: &str) -> bool {
    filter.is_none_or(|f| f.name == name && f.kind.as_deref().is_none_or(|k| k == kind))
}

fn labelled(
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    // The generated selectors are only `matchLabels`.
    sel.is_none_or(|s| s.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The binding scope and roleRef (kind, name) a connector permission value names, read here
/// from the value's text: `namespace_role/<namespace>/<Role|ClusterRole>:<name>` or
/// `cluster_role//ClusterRole:<name>`.
fn entitlement_named(value: &str) -> Option<(Option<String>, String, String)> {
    let mut parts = value.splitn(3, '/');
    let (ty, resource, id) = (parts.next()?, parts.next()?, parts.next()?);
    let (kind, name) = id.split_once(':').filter(|(k, n)| matches!(*k, "Role" | "ClusterRole") && !n.is_empty())?;
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    match ty {
        "cluster_role" if resource.is_empty() && kind == "ClusterRole" => Some((None, kind.into(), name.into())),
        "namespace_role" if dns_label(resource) => Some((Some(resource.into()), kind.into(), name.into())),
        _ => None,
    }
}

/// Whether an `entitlements` rule allows removing the entitlement `value` names.
fn entitlement_allowed(e: &deprovisioner::crd::EntitlementAccess, observed: &Observed, value: &str) -> bool {
    let Some((ns, _, role)) = entitlement_named(value) else { return false };
    let role_ok = e.roles.is_empty() || e.roles.iter().any(|p| glob_match(p, &role));
    role_ok
        && match ns {
            None => e.cluster_wide,
            Some(ns) => {
                e.namespaces.contains(&ns)
                    || e.namespace_selector.as_ref().is_some_and(|s| {
                        observed.namespaces.iter().any(|n| {
                            n.metadata.name.as_deref() == Some(&ns)
                                && labelled(Some(s), n.metadata.labels.as_ref().unwrap())
                        })
                    })
            }
        }
}

/// Whether an `entitlements` rule selects a binding in `ns` (`None`: a ClusterRoleBinding) with
/// this roleRef for one of the request's permissions: the value names exactly it, and the rule
/// allows it.
fn entitlement_selects(
    r: &deprovisioner::crd::AccessRule,
    perms: &[Option<String>],
    observed: &Observed,
    ns: Option<&str>,
    role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
) -> bool {
    r.entitlements.as_ref().is_some_and(|e| {
        perms.iter().flatten().any(|v| {
            entitlement_allowed(e, observed, v)
                && entitlement_named(v)
                    .is_some_and(|(n, kind, name)| n.as_deref() == ns && kind == role_ref.kind && name == role_ref.name)
        })
    })
}

/// Whether the policy (one covering the request) selects this binding, decided here from the
/// policy's text rather than by the planner's code.
fn policy_selects(
    p: &DeprovisionPolicy,
    spec: &DeprovisionRequestSpec,
    observed: &Observed,
    scope: &BindingScope,
    name: &str,
) -> bool {
    p.spec.rules.iter().any(|r| {
        let perms = rule_applies(r, spec);
        if perms.is_empty() {
            return false;
        }
        match scope {
            BindingScope::Namespaced(ns) => {
                let Some(b) = observed
                    .role_bindings
                    .iter()
                    .find(|b| b.metadata.namespace.as_deref() == Some(ns) && b.metadata.name.as_deref() == Some(name))
                else {
                    return false;
                };
                let labels = b.metadata.labels.clone().unwrap_or_default();
                let by_rb = r.role_bindings.as_ref().is_some_and(|rb| {
                    let by_label = rb.namespace_selector.as_ref().is_some_and(|s| {
                        observed.namespaces.iter().any(|n| {
                            n.metadata.name.as_deref() == Some(ns)
                                && labelled(Some(s), n.metadata.labels.as_ref().unwrap())
                        })
                    });
                    (rb.namespaces.contains(ns) || by_label)
                        && (rb.names.is_empty() || rb.names.iter().any(|n| n == name))
                        && labelled(rb.selector.as_ref(), &labels)
                        && role_ref_ok(rb.role_ref.as_ref(), &b.role_ref.kind, &b.role_ref.name)
                });
                let by_ns = r.namespace_access.as_ref().is_some_and(|na| {
                    na.namespaces.contains(ns)
                        || (na.from_permission_value && perms.iter().any(|p| p.as_deref() == Some(ns.as_str())))
                });
                by_rb || by_ns || entitlement_selects(r, &perms, observed, Some(ns), &b.role_ref)
            }
            BindingScope::Cluster => {
                let Some(b) = observed.cluster_role_bindings.iter().find(|b| b.metadata.name.as_deref() == Some(name))
                else {
                    return false;
                };
                let by_crb = r.cluster_role_bindings.as_ref().is_some_and(|crb| {
                    (crb.names.is_empty() || crb.names.iter().any(|n| n == name))
                        && labelled(crb.selector.as_ref(), &b.metadata.labels.clone().unwrap_or_default())
                        && role_ref_ok(crb.role_ref.as_ref(), &b.role_ref.kind, &b.role_ref.name)
                });
                by_crb || entitlement_selects(r, &perms, observed, None, &b.role_ref)
            }
        }
    })
}

/// Whether the subject is one the policy says the target user is known as.
fn policy_names(p: &DeprovisionPolicy, spec: &DeprovisionRequestSpec, s: &Subject, binding_ns: Option<&str>) -> bool {
    let Some(have) = Principal::of_subject(s, binding_ns) else { return false };
    p.spec.subjects.iter().any(|t| {
        let Ok(name) = render(&t.name, spec) else { return false };
        let name = format!("{}{name}", t.prefix.as_deref().unwrap_or(""));
        let eq = |a: &str, b: &str| if t.case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b };
        match (format!("{:?}", t.kind).as_str(), &have) {
            ("User", _) => match (Principal::user(&name), &have) {
                (Principal::User(a), Principal::User(b)) => eq(&a, b),
                (Principal::ServiceAccount(an, a), Principal::ServiceAccount(bn, b)) => an == *bn && a == *b,
                _ => false,
            },
            ("Group", Principal::Group(b)) => eq(&name, b),
            ("ServiceAccount", Principal::ServiceAccount(bn, b)) => {
                let ns = t.namespace.as_deref().map(|n| render(n, spec));
                matches!(ns, Some(Ok(ns)) if ns == *bn) && name == *b
            }
            _ => false,
        }
    })
}

fn find_subjects<'a>(
    observed: &'a Observed,
    scope: &BindingScope,
    name: &str,
    uid: &str,
) -> Option<(&'a [Subject], bool)> {
    let pick = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.as_deref() == Some(name) && m.uid.as_deref() == Some(uid)
    };
    match scope {
        BindingScope::Namespaced(ns) => observed
            .role_bindings
            .iter()
            .find(|b: &&Arc<RoleBinding>| pick(&b.metadata) && b.metadata.namespace.as_deref() == Some(ns))
            .map(|b| (b.subjects.as_deref().unwrap_or(&[]), b.metadata.deletion_timestamp.is_some())),
        BindingScope::Cluster => observed
            .cluster_role_bindings
            .iter()
            .find(|b: &&Arc<ClusterRoleBinding>| pick(&b.metadata))
            .map(|b| (b.subjects.as_deref().unwrap_or(&[]), b.metadata.deletion_timestamp.is_some())),
    }
}

fn same_subject(s: &Subject, r: &SubjectRef) -> bool {
    s.kind == r.kind && s.name == r.name && s.namespace == r.namespace
}

/// Checks one planner outcome against the invariants; returns a description of what broke.
fn check_plan(
    spec: &DeprovisionRequestSpec,
    all: &[DeprovisionPolicy],
    observed: &Observed,
    protected: &Protected,
    outcome: &Result<deprovisioner::plan::Plan, PlanError>,
) -> Result<(), String> {
    let matching: Vec<&DeprovisionPolicy> =
        all.iter().filter(|p| p.spec.application.app_id.as_deref() == spec.application.app_id.as_deref()).collect();
    let plan = match outcome {
        Ok(plan) => plan,
        Err(PlanError::InvalidPolicy { policy, .. }) => {
            // Only a policy that really is invalid.
            let p = matching.iter().find(|p| p.metadata.name.as_deref() == Some(policy)).ok_or("unknown policy")?;
            return validate_policy(&p.spec).is_err().then_some(()).ok_or(format!("{policy} called invalid"));
        }
        Err(PlanError::NoPolicy(_)) => return matching.is_empty().then_some(()).ok_or("NoPolicy with policies".into()),
        Err(PlanError::TooLarge(n)) => return Err(format!("TooLarge({n}) from a small world")),
        Err(PlanError::Managed(m)) => return Err(format!("Managed({m}) from a world where no tool manages a binding")),
        Err(PlanError::RecordTooLarge { needed, .. }) => {
            return Err(format!("RecordTooLarge({needed}) from a small world"));
        }
        Err(PlanError::Entitlement { permission, .. }) => {
            // Only a value some entitlements rule applies to and none allows.
            let rules = matching.iter().flat_map(|p| &p.spec.rules).filter(|r| {
                r.entitlements.is_some() && rule_applies(r, spec).iter().any(|v| v.as_deref() == Some(permission))
            });
            let (mut applying, mut allowed) = (false, false);
            for r in rules {
                applying = true;
                allowed |= entitlement_allowed(r.entitlements.as_ref().unwrap(), observed, permission);
            }
            return (applying && !allowed).then_some(()).ok_or(format!("{permission:?} refused, applying {applying}"));
        }
        Err(e @ (PlanError::ConnectorOnly { .. } | PlanError::BadAccountId { .. })) => {
            return Err(format!("{e}: from a world with no LumosAccount subjects"));
        }
        Err(
            PlanError::UnmappedPermission { .. }
            | PlanError::Template { .. }
            | PlanError::BadNamespace(_)
            | PlanError::Protected(_)
            | PlanError::NeedsPermission { .. }
            | PlanError::NotAllowed { .. }
            | PlanError::ConflictingPolicies { .. },
        ) => return Ok(()),
    };
    let names: Vec<&str> = matching.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    if plan.policies != names {
        return Err(format!("plan names policies {:?}, matching are {names:?}", plan.policies));
    }
    let mut seen = BTreeSet::new();
    for (i, a) in plan.actions.iter().enumerate() {
        if a.id != i as i32 {
            return Err(format!("action {i} has id {}", a.id));
        }
        let Action::RemoveBindingSubject(b) = &a.action else { continue };
        if !seen.insert((b.binding.clone(), b.subject.clone())) {
            return Err(format!("two actions for {} | {}", b.binding, b.subject));
        }
        let (subjects, deleting) = find_subjects(observed, &b.binding.scope, &b.binding.name, &b.binding.uid)
            .ok_or_else(|| format!("{} was not observed", b.binding))?;
        if deleting {
            return Err(format!("{} is being deleted", b.binding));
        }
        let s = subjects
            .iter()
            .find(|s| same_subject(s, &b.subject))
            .ok_or_else(|| format!("{} does not hold {}", b.binding, b.subject))?;
        let p =
            Principal::of_subject(s, b.binding.namespace()).ok_or_else(|| format!("{} is no principal", b.subject))?;
        if let Some(why) = protected.why(&p) {
            return Err(format!("protected subject removed from {}: {why}", b.binding));
        }
        match &p {
            Principal::User(n) | Principal::Group(n) if is_system_name(n) => {
                return Err(format!("system: subject {n} removed from {}", b.binding));
            }
            Principal::ServiceAccount(ns, n) if ns == "kube-system" || (ns.as_str(), n.as_str()) == OPERATOR => {
                return Err(format!("ServiceAccount {ns}/{n} removed from {}", b.binding));
            }
            _ => {}
        }
        let policy = matching.iter().find(|p| p.metadata.name.as_deref() == Some(&a.policy)).ok_or("no such policy")?;
        if !policy_selects(policy, spec, observed, &b.binding.scope, &b.binding.name) {
            return Err(format!("{} is not selected by {}", b.binding, a.policy));
        }
        if !policy_names(policy, spec, s, b.binding.namespace()) {
            return Err(format!("{} is not a subject {} names", b.subject, a.policy));
        }
        if b.when_empty != policy.spec.empty_bindings {
            return Err(format!("{} planned with {:?}", b.binding, b.when_empty));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn the_planner_removes_only_what_a_policy_selects_and_never_a_protected_subject(
        (spec, all, rbs, crbs) in world(),
        operator_known in prop::bool::weighted(0.8),
    ) {
        let observed = observed_from(rbs, crbs);
        let protected = Protected { operator: operator_known.then(|| (OPERATOR.0.to_string(), OPERATOR.1.to_string())), also: vec![] };
        let outcome = compute(&spec, &all, &observed, &protected);
        if let Err(why) = check_plan(&spec, &all, &observed, &protected, &outcome) {
            // Without the operator's identity known, its own ServiceAccount is not protected.
            let operator_removed = !operator_known && why.starts_with("ServiceAccount deprovisioner/deprovisioner");
            prop_assert!(operator_removed, "{}\nplan: {:#?}", why, outcome);
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// The controller plans from the bindings the index files under the target's subjects, and
    /// from every binding in scope only when that plan confirms an absence (its count of bindings
    /// checked needs them all): the outcome must be the one planning from everything gives.
    #[test]
    fn planning_from_the_bindings_naming_the_target_plans_the_same(
        (spec, all, rbs, crbs) in world(),
    ) {
        let observed = observed_from(rbs, crbs);
        let protected = Protected { operator: Some((OPERATOR.0.to_string(), OPERATOR.1.to_string())), also: vec![] };
        // The controller plans from everything when the subjects cannot be resolved.
        let Ok(wanted) = principals(&spec, &matching_policies(&spec, &all)) else { return Ok(()) };
        let keys = wanted.iter().map(Wanted::key).collect();
        let named = observed.naming(&keys);
        let full = compute(&spec, &all, &observed, &protected);
        let from_named = compute(&spec, &all, &named, &protected);
        match &full {
            Ok(p) if p.checks_absence() => {
                prop_assert!(from_named.as_ref().is_ok_and(|p| p.checks_absence()), "{:#?}", from_named);
            }
            _ => prop_assert_eq!(&from_named, &full),
        }
    }
}

/// The planner property is only as good as the worlds it sees: with the default seed, they must
/// reach plans that remove subjects (from RoleBindings and ClusterRoleBindings) and each of the
/// refusals the invariants are about, not just "no policy".
#[test]
fn the_planner_worlds_reach_removals_and_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let world = (
        request(),
        policies(),
        prop::collection::vec(binding_seed(), 0..10),
        prop::collection::vec(binding_seed(), 0..5),
    );
    let protected = Protected { operator: Some((OPERATOR.0.to_string(), OPERATOR.1.to_string())), also: vec![] };
    let mut seen = BTreeMap::<&str, usize>::new();
    for _ in 0..512 {
        let (spec, all, rbs, crbs) = world.new_tree(&mut runner).unwrap().current();
        let observed = observed_from(rbs, crbs);
        let outcome = compute(&spec, &all, &observed, &protected);
        let removals = |scope: fn(&BindingScope) -> bool| {
            outcome.as_ref().is_ok_and(|p| {
                p.actions
                    .iter()
                    .any(|a| matches!(&a.action, Action::RemoveBindingSubject(b) if scope(&b.binding.scope)))
            })
        };
        if removals(|s| matches!(s, BindingScope::Namespaced(_))) {
            *seen.entry("removes from a RoleBinding").or_default() += 1;
        }
        if removals(|s| matches!(s, BindingScope::Cluster)) {
            *seen.entry("removes from a ClusterRoleBinding").or_default() += 1;
        }
        // The narrowing property needs worlds where the target's bindings are a strict part.
        let named = principals(&spec, &matching_policies(&spec, &all))
            .map(|w| observed.naming(&w.iter().map(Wanted::key).collect()))
            .ok();
        let fewer = named.is_some_and(|n| {
            n.role_bindings.len() + n.cluster_role_bindings.len()
                < observed.role_bindings.len() + observed.cluster_role_bindings.len()
        });
        if fewer && removals(|_| true) && outcome.as_ref().is_ok_and(|p| !p.checks_absence()) {
            *seen.entry("plans from fewer bindings than in scope").or_default() += 1;
        }
        let kind = match &outcome {
            Ok(_) => "planned",
            Err(PlanError::Protected(_)) => "Protected",
            Err(PlanError::NoPolicy(_)) => "NoPolicy",
            Err(PlanError::NotAllowed { .. }) => "NotAllowed",
            Err(PlanError::ConflictingPolicies { .. }) => "ConflictingPolicies",
            Err(_) => "other refusal",
        };
        *seen.entry(kind).or_default() += 1;
    }
    let at_least = [
        ("removes from a RoleBinding", 20),
        ("plans from fewer bindings than in scope", 10),
        ("removes from a ClusterRoleBinding", 10),
        ("Protected", 20),
        ("NotAllowed", 10),
        ("ConflictingPolicies", 3),
    ];
    for (kind, n) in at_least {
        assert!(seen.get(kind).is_some_and(|&k| k >= n), "{kind} reached too rarely: {seen:?}");
    }
}

/// The same for the connector's worlds: `entitlements` rules remove bindings (RoleBindings and
/// ClusterRoleBindings) and refuse entitlements outside their bounds.
#[test]
fn the_connector_worlds_reach_entitlement_removals_and_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let world = connector_world();
    let protected = Protected { operator: Some((OPERATOR.0.to_string(), OPERATOR.1.to_string())), also: vec![] };
    let mut seen = BTreeMap::<&str, usize>::new();
    for _ in 0..512 {
        let (spec, all, rbs, crbs) = world.new_tree(&mut runner).unwrap().current();
        let observed = observed_from(rbs, crbs);
        let outcome = compute(&spec, &all, &observed, &protected);
        let through_entitlements = |scope: fn(&BindingScope) -> bool| {
            outcome.as_ref().is_ok_and(|p| {
                p.actions.iter().any(|a| {
                    matches!(&a.action, Action::RemoveBindingSubject(b) if scope(&b.binding.scope))
                        && a.reason.ends_with(": entitlements")
                })
            })
        };
        if through_entitlements(|s| matches!(s, BindingScope::Namespaced(_))) {
            *seen.entry("removes from a RoleBinding through entitlements").or_default() += 1;
        }
        if through_entitlements(|s| matches!(s, BindingScope::Cluster)) {
            *seen.entry("removes from a ClusterRoleBinding through entitlements").or_default() += 1;
        }
        let kind = match &outcome {
            Ok(_) => "planned",
            Err(PlanError::Entitlement { .. }) => "Entitlement",
            Err(_) => "other refusal",
        };
        *seen.entry(kind).or_default() += 1;
    }
    eprintln!("connector worlds: {seen:?}");
    let at_least = [
        ("removes from a RoleBinding through entitlements", 5),
        ("removes from a ClusterRoleBinding through entitlements", 5),
        ("Entitlement", 20),
        ("planned", 50),
    ];
    for (kind, n) in at_least {
        assert!(seen.get(kind).is_some_and(|&k| k >= n), "{kind} reached too rarely: {seen:?}");
    }
}

// --- regressions found by the properties above -----------------------------------------------

/// `check_url` looked for `{{` in the authority by splitting the raw string at `://`, so a URL
/// template the parser reads with another separator (`https:{{..}}`, `https:/{{..}}`,
/// backslashes) passed, and a request value then chose the host of a call carrying the policy's
/// credentials. Found by `url_checks_keep_calls_where_they_may_go`.
#[test]
fn a_template_cannot_reach_the_host_through_another_separator() {
    for raw in [
        "https:{{custom_fields.h}}/x",
        "https:/{{custom_fields.h}}/x",
        "https:\\\\{{custom_fields.h}}/x",
        "https:\\/{{custom_fields.h}}/x",
        "https:{{custom_fields.h}}.example/x",
        "HTTPS:h.example{{custom_fields.h}}/x",
    ] {
        let r = check_url(raw, false);
        assert!(r.as_ref().is_err_and(|e| e.contains("host literally")), "{raw}: {r:?}");
    }
    // Templates after the host stay allowed however the separator is written.
    assert!(check_url("https:/h.example/u/{{target_user.email}}", false).is_ok());
}

/// `url_escape(".")` is `%2E`, which URL parsers (WHATWG, so reqwest) read as the dot segment
/// `.`, and `%2E%2E` as `..`: a request value `..` (a custom field, or the local part of a
/// target email `..@lumos.com`) turned `DELETE /orgs/acme/members/{{..}}` into
/// `DELETE /orgs/acme/`. The planner now refuses such a value. Found by
/// `url_escaped_values_stay_in_their_path_segment`.
#[test]
fn a_request_value_cannot_step_out_of_its_url_path_segment() {
    let escaped = Url::parse(&format!("https://api.example/orgs/acme/members/{}", url_escape(".."))).unwrap();
    assert_eq!(escaped.path(), "/orgs/acme/", "why the planner must refuse it: the parser steps up");

    let http = json!({"system": "api", "method": "DELETE", "url": "https://api.example/orgs/acme/members/{{target_user.email_local}}"});
    let policy = fixtures::policy(
        "p",
        json!({"application": {"appId": "demo_app"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}], "rules": [{"http": http}]}),
    );
    for local in [".", ".."] {
        let spec = fixtures::request_spec("demo_app", &format!("{local}@lumos.com")).build();
        let r = compute(&spec, std::slice::from_ref(&policy), &Observed::default(), &Protected::default());
        assert!(
            matches!(&r, Err(PlanError::Template { source: TemplateError::DotSegment { value, .. }, .. }) if value == local),
            "{local}: {r:?}"
        );
    }
    let spec = fixtures::request_spec("demo_app", "...@lumos.com").build();
    let plan = compute(&spec, &[policy], &Observed::default(), &Protected::default()).unwrap();
    let Action::HttpCall(call) = &plan.actions[0].action else { panic!("{plan:?}") };
    assert_eq!(call.url, "https://api.example/orgs/acme/members/%2E%2E%2E", "three dots are a name");
    assert_eq!(
        render_url("https://h.example/q?u={{target_user.email}}", &spec).unwrap(),
        "https://h.example/q?u=%2E%2E%2E%40lumos%2Ecom"
    );
}
