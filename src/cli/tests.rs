use super::*;

fn run(args: &[&str]) -> Result<RunArgs, String> {
    let mut all = vec!["deprovisioner", "run", "--secret-file", "/s"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all).map_err(|e| e.to_string())?.command {
        Command::Run(r) => Ok(*r),
        _ => unreachable!(),
    }
}

#[test]
fn defaults() {
    let r = run(&[]).unwrap();
    assert_eq!(r.response_deadline, Duration::from_secs(10));
    assert_eq!(r.body_limit, 1024 * 1024);
    assert_eq!(r.retention, Duration::from_secs(400 * 86_400));
    assert_eq!(r.secret_header, axum::http::header::AUTHORIZATION);
    assert!(r.leader_election);
    assert_eq!(r.audit_max_body, 1024 * 1024, "16 batches in flight stay well inside the pod's 256 MiB");
}

#[test]
fn run_and_the_readers_of_the_activity_store_meet_in_the_same_namespace() {
    let r = run(&[]).unwrap();
    let Command::Connector(c) = Cli::try_parse_from(["deprovisioner", "connector", "info"]).unwrap().command else {
        panic!("not connector")
    };
    if std::env::var_os("POD_NAMESPACE").is_none() && std::env::var_os("DEPROVISIONER_ACTIVITY_NAMESPACE").is_none() {
        assert_eq!(r.namespace, c.activity.activity_namespace);
        assert_eq!(r.namespace, c.service_account.0, "where the operator's own ServiceAccount is assumed to be");
    }
}

#[test]
fn bad_values_fail_with_a_clear_message() {
    let e = run(&["--response-deadline", "15s"]).unwrap_err();
    assert!(e.contains("less than Lumos's 15s"), "{e}");
    assert!(run(&["--response-deadline", "0s"]).is_err());
    assert!(run(&["--response-deadline", "ten"]).unwrap_err().contains("examples"));
    assert!(run(&["--service-account", "nope"]).unwrap_err().contains("NAMESPACE/NAME"));
    assert!(run(&["--secret-header", "bad header"]).unwrap_err().contains("not a valid HTTP header"));
    assert!(run(&["--log-format", "xml"]).is_err());
    assert!(run(&["--no-such-flag"]).is_err());
    assert_eq!(run(&["--service-account", "ns/sa"]).unwrap().service_account, Some(("ns".into(), "sa".into())));
}

/// The connector's secrets, as the chart passes them; none by default (not served).
#[test]
fn connector_secret_files() {
    let r = run(&[]).unwrap();
    assert_eq!((r.connector_secret_file, r.connector_unassign_secret_file), (None, None));
    let r = run(&["--connector-secret-file=/c/secret", "--connector-unassign-secret-file=/u/secret"]).unwrap();
    assert_eq!(r.connector_secret_file, Some(PathBuf::from("/c/secret")));
    assert_eq!(r.connector_unassign_secret_file, Some(PathBuf::from("/u/secret")));
}

#[test]
fn connector_takes_a_capability_and_json() {
    let parsed = Cli::try_parse_from(["deprovisioner", "connector", "list_accounts", "--json", "{}"]).unwrap();
    let Command::Connector(c) = parsed.command else { panic!("not connector") };
    assert_eq!((c.capability.as_str(), c.json.as_deref()), ("list_accounts", Some("{}")));
    assert_eq!(c.service_account, ("deprovisioner".to_string(), "deprovisioner".to_string()));
    assert!(Cli::try_parse_from(["deprovisioner", "connector", "info", "--json", "{}", "--json-file", "f"]).is_err());
    let gz = ["deprovisioner", "connector", "info", "--result-file-path", "out.json.gz"];
    let Command::Connector(c) = Cli::try_parse_from(gz).unwrap().command else { panic!("not connector") };
    assert_eq!(c.result_file_path, Some(PathBuf::from("out.json.gz")));
    let e = Cli::try_parse_from(["deprovisioner", "connector", "info", "--result-file-path", "out.json"]).unwrap_err();
    assert!(e.to_string().contains("must end in .gz"), "{e}");
}

#[test]
fn inactive_takes_a_window_and_where_the_activity_store_is() {
    let parse = |args: &[&str]| match Cli::try_parse_from([&["deprovisioner", "inactive"], args].concat()) {
        Ok(Cli { command: Command::Inactive(a) }) => Ok(a),
        Ok(_) => unreachable!(),
        Err(e) => Err(e.to_string()),
    };
    let a = parse(&["--for", "30d"]).unwrap();
    assert_eq!(a.window, Duration::from_secs(30 * 86_400));
    assert_eq!(a.format, InactiveFormat::Table);
    assert_eq!(a.activity.activity_namespace, "deprovisioner");
    assert_eq!(a.activity.activity_prefix, "deprovisioner-activity");
    let a = parse(&["--for", "12h", "--format", "json", "--activity-prefix", "x-activity"]).unwrap();
    assert_eq!((a.format, a.activity.activity_prefix.as_str()), (InactiveFormat::Json, "x-activity"));
    assert!(parse(&[]).unwrap_err().contains("--for"));
    assert!(parse(&["--for", "0s"]).unwrap_err().contains("longer than 0s"));
    assert!(parse(&["--for", "soon"]).unwrap_err().contains("examples"));
}

/// Expiry follows the binding index: off with it by default, refused when asked for without it.
#[test]
fn expiry_needs_the_binding_index() {
    let r = run(&[]).unwrap();
    assert!(r.expiry && r.binding_index && r.check().is_ok());
    let r = run(&["--binding-index", "false"]).unwrap();
    assert!(!r.expiry && r.check().is_ok());
    let r = run(&["--binding-index", "false", "--expiry", "true"]).unwrap();
    assert!(r.check().unwrap_err().contains("--expiry=true needs --binding-index=true"));
    assert!(run(&["--binding-index", "false", "--expiry", "true", "--controller", "false"]).unwrap().check().is_ok());
}
