//! Checks on a policy that the API server's schema cannot make: templates, selectors, names,
//! URLs, JSON bodies and credential-looking headers. Also the name rules planning relies on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_core::Selector;

use super::template;
use crate::crd::{DeprovisionPolicySpec, SubjectKind};
pub use crate::names::is_dns_label;

/// Checks what the API server's schema cannot: templates, selectors, names, patterns.
pub fn validate_policy(spec: &DeprovisionPolicySpec) -> Result<(), String> {
    for (i, s) in spec.subjects.iter().enumerate() {
        template::validate(&s.name).map_err(|e| format!("subjects[{i}].name: {e}"))?;
        if s.kind == SubjectKind::LumosAccount && (s.namespace.is_some() || s.prefix.is_some()) {
            return Err(format!(
                "subjects[{i}] is a LumosAccount: the account id names the kind and namespace, so it takes no namespace or prefix"
            ));
        }
        if s.kind == SubjectKind::LumosAccount && s.case_insensitive {
            return Err(format!(
                "subjects[{i}] is a LumosAccount, matched exactly (the connector lists alice@x and Alice@X as two accounts): it cannot be caseInsensitive"
            ));
        }
        if let Some(ns) = &s.namespace {
            template::validate(ns).map_err(|e| format!("subjects[{i}].namespace: {e}"))?;
            if template::uses_requester_fields(ns) && s.allowed_namespaces.is_empty() {
                return Err(format!(
                    "subjects[{i}].namespace comes from fields the requester types (custom_fields, user): list the namespaces it may name in allowedNamespaces"
                ));
            }
        }
    }
    let sel_ok = |s: Option<&LabelSelector>, at: &str| -> Result<(), String> {
        if let Some(s) = s {
            if s.match_labels.as_ref().is_none_or(|l| l.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
            {
                return Err(format!("{at} is empty, which would select everything"));
            }
            Selector::try_from(s.clone()).map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(())
    };
    for (i, r) in spec.rules.iter().enumerate() {
        if r.permissions.iter().any(|p| p.is_empty()) {
            return Err(format!("rules[{i}].permissions has an empty pattern"));
        }
        if let Some(rb) = &r.role_bindings {
            check_namespaces(&rb.namespaces).map_err(|e| format!("rules[{i}].roleBindings.namespaces: {e}"))?;
            sel_ok(rb.namespace_selector.as_ref(), &format!("rules[{i}].roleBindings.namespaceSelector"))?;
            sel_ok(rb.selector.as_ref(), &format!("rules[{i}].roleBindings.selector"))?;
        }
        if let Some(crb) = &r.cluster_role_bindings {
            sel_ok(crb.selector.as_ref(), &format!("rules[{i}].clusterRoleBindings.selector"))?;
        }
        if let Some(t) = &r.scim {
            crate::egress::check_url(&t.base_url, t.allow_link_local_addresses)
                .map_err(|e| format!("rules[{i}].scim.baseUrl: {e}"))?;
            template::validate(&t.match_value).map_err(|e| format!("rules[{i}].scim.matchValue: {e}"))?;
        }
        if let Some(t) = &r.http {
            crate::egress::check_url(&t.url, t.allow_link_local_addresses)
                .map_err(|e| format!("rules[{i}].http.url: {e}"))?;
            template::validate(&t.url).map_err(|e| format!("rules[{i}].http.url: {e}"))?;
            if let Some(b) = &t.body {
                template::validate(b).map_err(|e| format!("rules[{i}].http.body: {e}"))?;
                check_body(b).map_err(|e| format!("rules[{i}].http.body: {e}"))?;
            }
            if !matches!(t.method.to_ascii_uppercase().as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                return Err(format!("rules[{i}].http.method {:?} is not GET, POST, PUT, PATCH or DELETE", t.method));
            }
            for h in &t.headers {
                if h.value.is_some() && is_credential_header(&h.name) {
                    return Err(format!(
                        "rules[{i}].http.headers: {} looks like a credential; use valueFrom (a Secret) so it is never recorded",
                        h.name
                    ));
                }
            }
        }
        if let Some(na) = &r.namespace_access {
            check_namespaces(&na.namespaces).map_err(|e| format!("rules[{i}].namespaceAccess.namespaces: {e}"))?;
        }
        if let Some(m) = &r.max_access {
            crate::expiry::grant::parse_max_access(m).map_err(|e| format!("rules[{i}].maxAccess: {e}"))?;
        }
        if let Some(e) = &r.entitlements {
            check_namespaces(&e.namespaces).map_err(|err| format!("rules[{i}].entitlements.namespaces: {err}"))?;
            sel_ok(e.namespace_selector.as_ref(), &format!("rules[{i}].entitlements.namespaceSelector"))?;
            if e.roles.iter().any(|p| p.is_empty()) {
                return Err(format!("rules[{i}].entitlements.roles has an empty pattern"));
            }
            if e.namespaces.is_empty() && e.namespace_selector.is_none() && !e.cluster_wide {
                return Err(format!(
                    "rules[{i}].entitlements allows nothing: give namespaces, namespaceSelector or clusterWide: true"
                ));
            }
        }
    }
    Ok(())
}

/// Every `{{field}}` of a JSON body template must sit inside a string literal, so a payload value
/// can never add JSON structure.
fn check_body(body: &str) -> Result<(), String> {
    let mut marked = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("{{") {
        marked.push_str(&rest[..i]);
        marked.push_str("__deprovisioner_field__");
        rest = rest[i..].find("}}").map_or("", |j| &rest[i + j + 2..]);
    }
    marked.push_str(rest);
    serde_json::from_str::<serde_json::Value>(&marked)
        .map(|_| ())
        .map_err(|e| format!("must be JSON with every {{{{field}}}} inside a string: {e}"))
}

/// Header names whose literal values would be credentials.
fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "cookie" || ["auth", "token", "key", "secret", "password", "credential"].iter().any(|w| n.contains(w))
}

fn check_namespaces(names: &[String]) -> Result<(), String> {
    match names.iter().find(|n| !is_dns_label(n)) {
        Some(n) => Err(format!("{n:?} is not a namespace name")),
        None => Ok(()),
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last) {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}
