//! What a verification means (pure): the `Verified` condition, whether the answer fails, and the
//! one sentence Lumos gets.

use crate::crd::{BindingKind, ResidualAccessRule, ResidualBinding, Review, UnverifiedRule, Verification};
use crate::text;

/// The verdict of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The authorizer allows none of what was removed.
    NoRemainingAccess,
    /// The authorizer still allows some of it.
    AccessRemains,
    /// The checks could not be made.
    NotVerified,
}

impl Verdict {
    /// The verdict of `v`. Access the authorizer confirmed outranks a later step that failed
    /// (the residual search): what was confirmed is never hidden behind "not verified".
    pub fn of(v: &Verification) -> Verdict {
        if v.reviews.iter().any(|r| r.allowed) {
            Verdict::AccessRemains
        } else if v.error.is_some() {
            Verdict::NotVerified
        } else {
            Verdict::NoRemainingAccess
        }
    }

    /// The `Verified` condition's status.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::NoRemainingAccess => "True",
            Verdict::AccessRemains => "False",
            Verdict::NotVerified => "Unknown",
        }
    }
}

/// Whether this verification makes the answer `FAILURE`: access remains that the authorizer
/// confirms and the policies say `onResidualAccess: Fail`, or the checks could not be made and
/// they say `onUnverified: Fail` (the default: an answer never claims more than was proven).
pub fn fails(v: &Verification) -> bool {
    match Verdict::of(v) {
        Verdict::AccessRemains => v.on_residual_access == ResidualAccessRule::Fail,
        Verdict::NotVerified => v.on_unverified == UnverifiedRule::Fail,
        Verdict::NoRemainingAccess => false,
    }
}

/// The binding an authorizer reason names (`RBAC: allowed by ClusterRoleBinding "x" of ...`,
/// `... by RoleBinding "name/namespace" of ...`): kind, namespace, name.
pub fn binding_in_reason(reason: &str) -> Option<(BindingKind, Option<&str>, &str)> {
    let rest = reason.split_once("allowed by ")?.1;
    let (kind, rest) = rest.split_once(' ')?;
    let quoted = rest.strip_prefix('"')?.split_once('"')?.0;
    match kind {
        "ClusterRoleBinding" => Some((BindingKind::ClusterRoleBinding, None, quoted)),
        "RoleBinding" => {
            let (name, ns) = quoted.rsplit_once('/')?;
            Some((BindingKind::RoleBinding, Some(ns), name))
        }
        _ => None,
    }
}

/// The residual entry for the binding an authorizer reason names.
fn residual_of<'v>(v: &'v Verification, reason: &str) -> Option<&'v ResidualBinding> {
    let (kind, ns, name) = binding_in_reason(reason)?;
    v.residual.iter().find(|r| r.kind == kind && r.namespace.as_deref() == ns && r.name == name)
}

/// How the target is still allowed `r`: `via ClusterRoleBinding x (why)`.
fn via(v: &Verification, r: &Review) -> String {
    let reason = r.reason.as_deref().unwrap_or_default();
    if let Some(res) = residual_of(v, reason) {
        return format!("via {} ({})", res.object(), res.why);
    }
    match binding_in_reason(reason) {
        Some((kind, Some(ns), name)) => format!("via {} {ns}/{name}", kind.as_str()),
        Some((kind, None, name)) => format!("via {} {name}", kind.as_str()),
        None if reason.is_empty() => "(the authorizer gave no reason)".into(),
        None => format!("({})", text::clip_to(reason, 120)),
    }
}

/// The sentence Lumos gets about the verification, e.g. `verified: no remaining access` or
/// `still allowed to update deployments in team-a via ClusterRoleBinding team-admins (not
/// covered by policy demo-app)`.
pub fn sentence(v: &Verification) -> String {
    let allowed: Vec<&Review> = v.reviews.iter().filter(|r| r.allowed).collect();
    if let (Some(e), true) = (&v.error, allowed.is_empty()) {
        return format!("removed, but not verified: {e}");
    }
    if let Some(first) = allowed.first() {
        let more = match allowed.len() {
            1 => String::new(),
            n => format!(" (and {} more allowed)", n - 1),
        };
        return format!("still allowed to {} {}{more}", first.describe(), via(v, first));
    }
    if v.residual.is_empty() {
        return "verified: no remaining access".into();
    }
    let named = text::first_and_more(v.residual.iter().map(|r| format!("{} ({})", r.object(), r.why)));
    format!("verified: no remaining access to what was removed; still named in {named}")
}

/// The `Verified` condition's message: the sentence, and how much was checked.
pub fn condition_message(v: &Verification) -> String {
    let asked = v.reviews.len();
    let allowed = v.reviews.iter().filter(|r| r.allowed).count();
    let residual = v.residual.len();
    text::clip(format!(
        "{}; {asked} access review(s) asked, {allowed} allowed; {residual} binding(s) still name the target",
        sentence(v)
    ))
}
