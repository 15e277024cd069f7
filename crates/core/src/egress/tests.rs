use super::*;

fn refused(raw: &str) -> String {
    check_url(raw, false).expect_err(raw)
}

#[test]
fn plain_http_reaches_loopback_only_however_the_host_is_written() {
    for ok in [
        "http://127.0.0.1:8080/x",
        "http://[::1]:8080/x",
        "http://localhost:9/x",
        "http://LOCALHOST/x",
        "http://127.1/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://%6c%6f%63%61%6c%68%6f%73%74/x",
    ] {
        let (_, egress) = check_url(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(egress.loopback_only, "{ok}");
    }
    for bad in [
        "http://h.example/x",
        "http://localhost:80@169.254.169.254/latest/meta-data/",
        "http://localhost.evil.example/x",
        "http://127.0.0.1.nip.io/x",
        "http://0x7f000001.example/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://[::127.0.0.1]/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://2130706433.example/x",
    ] {
        assert!(check_url(bad, false).is_err(), "{bad} was allowed");
    }
}

#[test]
fn credentials_in_the_url_are_refused_for_every_scheme() {
    assert!(refused("https://user:pw@h.example/x").contains("userinfo"));
    assert!(refused("https://user@h.example/x").contains("userinfo"));
    assert!(refused("http://localhost:80@127.0.0.1/x").contains("userinfo"));
}

#[test]
fn link_local_and_metadata_addresses_need_an_explicit_opt_in() {
    for bad in [
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/x",
        "https://[fe80::1]/x",
        "https://[::ffff:169.254.169.254]/x",
        "https://[::169.254.169.254]/x",
        "https://[64:ff9b::a9fe:a9fe]/x",
        "http://169.254.169.254/x",
    ] {
        assert!(refused(bad).contains("link-local") || refused(bad).contains("loopback"), "{bad}");
    }
    assert!(check_url("https://169.254.169.254/x", true).is_ok(), "the policy may opt in");
    assert!(check_url("http://169.254.169.254/x", true).is_err(), "but plain http stays loopback-only");
}

#[test]
fn templates_may_not_choose_the_host_or_the_scheme() {
    assert!(refused("https://{{target_user.email}}/x").contains("host literally"));
    assert!(refused("https://a{{custom_fields.h}}.example/x").contains("host literally"));
    assert!(refused("ftp://h.example/x").contains("https://"));
    assert!(check_url("https://h.example/u/{{target_user.email}}?q={{custom_fields.x}}", false).is_ok());
}
