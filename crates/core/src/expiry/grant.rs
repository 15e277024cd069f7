//! The pieces of time-bound access that the planner needs too (pure, and importing nothing of
//! the planner, so that `plan/` and `expiry` do not import each other): the annotation's name,
//! reading a `maxAccess`, whether an expiry's grant still holds, and which subject is the
//! expiring account.

use k8s_openapi::jiff::SignedDuration;

use crate::connector::model::AccountId;
use crate::crd::{BindingClocks, Expiry};
use crate::plan::subject::PrincipalRef;

/// The annotation on which the granting tool writes when each subject's access ends: a JSON
/// object from account ids to RFC 3339 times, e.g. `{"User:ann@x.com": "2025-07-01T00:00:00Z"}`.
pub const ANNOTATION: &str = "deprovisioner.dev/expires";

/// The longest `maxAccess` (100 years): anything longer is a typo.
const LONGEST: SignedDuration = SignedDuration::from_hours(24 * 365 * 100);

/// Reads a `maxAccess`: hours, minutes and seconds in that order, each at most once (`720h`,
/// `36h30m`, `90s`), more than zero.
pub fn parse_max_access(s: &str) -> Result<SignedDuration, String> {
    let bad = || format!("{s:?} is not a duration of hours, minutes and seconds such as 720h, 36h30m or 90s");
    let (mut total, mut rest, mut units) = (0i64, s, "hms");
    if s.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let at = units.find(unit).ok_or_else(bad)?;
        units = &units[at + 1..];
        let seconds = match unit {
            'h' => n.checked_mul(3600),
            'm' => n.checked_mul(60),
            _ => Some(n),
        };
        total = seconds.and_then(|x| total.checked_add(x)).ok_or_else(bad)?;
        rest = &rest[digits + 1..];
    }
    let d = SignedDuration::from_secs(total);
    if d.is_zero() {
        return Err(format!("{s:?} is zero: access would end at once"));
    }
    if d > LONGEST {
        return Err(format!("{s:?} is longer than 100 years"));
    }
    Ok(d)
}

/// Whether the access an expiry request was recorded for is still what the subject holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// The same grant: remove it.
    Holds,
    /// That grant ended (the subject was removed and given the binding again, or the binding is
    /// no longer time-bound for it): what it holds now ends on its own clock, if any. Why.
    Ended(String),
    /// Not known yet: the binding changed since the expiry was scheduled and the leader's clocks
    /// have not caught up with that change. Ask again shortly. Why.
    Unknown(String),
}

/// Whether the grant expiry `e` was recorded for still holds in the binding as it is now
/// (`version`: its resourceVersion; the caller saw the subject in it): the binding unchanged
/// since `e` was scheduled, it does; changed, the leader's `clocks` for it, when they are exact
/// for that very version, say whether the subject's clock still started at or before `e`'s start
/// (a subject removed and given it again has a later one). An `e` that names no version (recorded
/// before versions were kept) holds, as it did then.
pub fn holding(e: &Expiry, version: Option<&str>, clocks: Option<&BindingClocks>) -> Holding {
    let Some(scheduled) = e.binding_version.as_deref() else { return Holding::Holds };
    if version == Some(scheduled) {
        return Holding::Holds;
    }
    let now = version.unwrap_or("unknown");
    let Some(clocks) = clocks.filter(|c| c.version.is_some() && c.version.as_deref() == version) else {
        return Holding::Unknown(format!(
            "{} changed since the expiry was scheduled (resourceVersion {scheduled}, now {now}) and the leader's clocks do not cover that change yet",
            e.binding
        ));
    };
    match clocks.subjects.get(&e.account) {
        Some(c) if c.since.0 <= e.started_at.0 => Holding::Holds,
        Some(c) => Holding::Ended(format!(
            "{} was removed from {} and given it again since this expiry was scheduled: the access it held from {} ended; what it holds now started {} and ends on its own clock",
            e.account, e.binding, e.started_at.0, c.since.0
        )),
        None => Holding::Ended(format!(
            "{} holds {} on no clock now (the binding is no longer time-bound for it): the access this expiry was for is not what it holds",
            e.account, e.binding
        )),
    }
}

/// Whether the subject is exactly the expiring account (any spelling of it).
pub fn is_account(s: &k8s_openapi::api::rbac::v1::Subject, binding_namespace: Option<&str>, account: &str) -> bool {
    PrincipalRef::of_subject(s, binding_namespace).is_some_and(|p| AccountId(p.to_owned()).to_string() == account)
}
