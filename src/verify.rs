//! Proof of removal: once a request's actions are done, ask the API server's own authorizer
//! (SubjectAccessReview) whether the target can still do what the removed bindings granted, and
//! find every binding that still names them.
//!
//! `reviews.rs` (pure) turns the removed bindings' roles into bounded questions; `residual.rs`
//! (pure) says why a binding still naming the target was left alone; `verdict.rs` (pure) words
//! the outcome. This module reads the roles, asks the questions and pages through the bindings.

pub mod lag;
pub use deprovisioner_core::verify::{residual, reviews, verdict};

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use crate::crd::{
    Action, ActionResult, BindingRef, DeprovisionPolicy, DeprovisionRequestSpec, PlannedAction, ResidualAccessRule,
    ResidualBinding, Review, SubjectRef, UnverifiedRule, Verification,
};
use crate::plan::BindingView;
use crate::plan::subject::{Principal, Wanted};
use crate::text;
use crate::view::{Need, Reader, Since, Snapshot, View};
use lag::AuthorizerLag;
use residual::{Judge, MAX_RESIDUAL};
use reviews::{Grant, Identity};

/// How many SubjectAccessReviews the whole process has in flight at once (one request alone may
/// use them all). Each one costs the API server a pass over the bindings of the namespace asked
/// about (a denial reads them all): in a burst, unbounded reviews from every request worked at
/// once took its CPU from the webhook's record creates, which then timed out.
const REVIEWS_AT_ONCE: usize = 4;
static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(REVIEWS_AT_ONCE);

/// How long an answer naming a binding this request removed is asked again: the authorizer
/// reads bindings from its own cache, which may not have seen the removal yet.
const AUTHORIZER_CATCH_UP: Duration = Duration::from_secs(3);

/// How long the questions wait for the binding index to show the removals (see
/// [`index_caught_up`]); past it they are asked anyway (and asked again while stale).
const INDEX_CATCH_UP: Duration = Duration::from_millis(200);

/// The most bytes a recorded verification takes (planning keeps this room in the record).
pub use deprovisioner_core::verify::MAX_BYTES;

/// Page size of the residual search when it lists from the API server.
const PAGE: u32 = 500;

/// Whether a plan gets a verification: it has binding actions (external accounts are not
/// Kubernetes access).
pub fn applies(plan: &[PlannedAction]) -> bool {
    plan.iter().any(|a| matches!(a.action, Action::RemoveBindingSubject(_) | Action::ConfirmAbsent(_)))
}

/// What one verification reads.
pub struct Request<'a> {
    /// The request.
    pub spec: &'a DeprovisionRequestSpec,
    /// Names of the policies that matched (as recorded).
    pub policy_names: &'a [String],
    /// Every policy in the cluster.
    pub policies: &'a [DeprovisionPolicy],
    /// The plan.
    pub plan: &'a [PlannedAction],
    /// The results.
    pub results: &'a [ActionResult],
    /// Reviews to ask per removed binding and identity (at most [`reviews::MAX_REVIEWS`] in all).
    pub reviews_per_binding: usize,
}

/// Why the checks could not be made.
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("asking the authorizer: {0}")]
    Review(#[source] kube::Error),
    #[error("listing bindings: {0}")]
    List(#[source] kube::Error),
    #[error("none of the policies that planned this request ({0}) exists any more: who the target is cannot be told")]
    NoPolicies(String),
    #[error("the API server did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the authorizer could not decide: {0}")]
    Undecided(String),
}

/// Why a denial is no answer: the authorizer says it could not evaluate (`evaluationError`),
/// for more than RBAC's own "role not found" about some binding whose role is missing (which
/// every authorizer chain reports whenever such a binding is in the namespace, and which does
/// not change what RBAC allows). `None`: the answer stands.
fn undecided(allowed: bool, evaluation_error: Option<&str>) -> Option<String> {
    let e = evaluation_error.map(str::trim).filter(|e| !allowed && !e.is_empty())?;
    let parts = e.trim_start_matches('[').trim_end_matches(']').split(", ");
    let role_missing = |p: &str| {
        let rest = p
            .strip_prefix("clusterrole.rbac.authorization.k8s.io \"")
            .or_else(|| p.strip_prefix("role.rbac.authorization.k8s.io \""));
        rest.and_then(|r| r.strip_suffix("\" not found")).is_some_and(|name| !name.contains('"'))
    };
    match parts.into_iter().all(role_missing) {
        true => None,
        false => Some(text::clip_to(e, 240)),
    }
}

impl VerifyError {
    /// Whether asking again may help: an API call failed (unavailable, throttled, timed out, or
    /// forbidden: RBAC may be changing). What the policies say does not change by asking again.
    fn is_transient(&self) -> bool {
        match self {
            VerifyError::Read { .. }
            | VerifyError::Review(_)
            | VerifyError::List(_)
            | VerifyError::TimedOut(_)
            | VerifyError::Undecided(_) => true,
            VerifyError::Plan(_) | VerifyError::NoPolicies(_) => false,
        }
    }
}

/// Verifies a finished request. Never fails: what could not be checked is recorded as the
/// verification's `error` (the condition `Verified` is then `Unknown`).
pub async fn verify(client: &Client, view: Option<&View>, memory: &Memory, req: &Request<'_>) -> Verification {
    let matched: Vec<&DeprovisionPolicy> =
        req.policies.iter().filter(|p| req.policy_names.iter().any(|n| Some(n) == p.metadata.name.as_ref())).collect();
    let all_report = |says: &dyn Fn(&DeprovisionPolicy) -> bool| !matched.is_empty() && matched.iter().all(|p| says(p));
    // An expiry ends one binding's access: what other bindings grant is reported, not failed.
    let expiry = crate::plan::expiry_of(req.spec).is_some();
    let rule = match expiry || all_report(&|p| p.spec.on_residual_access == ResidualAccessRule::Report) {
        true => ResidualAccessRule::Report,
        false => ResidualAccessRule::Fail,
    };
    let on_unverified = match all_report(&|p| p.spec.on_unverified == UnverifiedRule::Report) {
        true => UnverifiedRule::Report,
        false => UnverifiedRule::Fail,
    };
    let fresh = || Verification {
        checked_at: Time(k8s_openapi::jiff::Timestamp::now()),
        on_residual_access: rule,
        on_unverified,
        identities: vec![],
        reviews: vec![],
        residual: vec![],
        notes: vec![],
        error: None,
    };
    let started = tokio::time::Instant::now();
    // Attempts that failed, and the last one's error.
    let (mut failed, mut last) = (0usize, String::new());
    let mut pause = RETRY_FIRST_PAUSE;
    let v = loop {
        let mut v = fresh();
        let given =
            (started + RETRY_WITHIN).saturating_duration_since(tokio::time::Instant::now()).max(ATTEMPT_AT_LEAST);
        let checked = match tokio::time::timeout(given, check(client, view, memory, req, &matched, &mut v)).await {
            Ok(checked) => checked,
            Err(_) => Err(VerifyError::TimedOut(given)),
        };
        let Err(e) = checked else {
            if failed > 0 {
                v.notes.push(text::clip(format!("verified after {failed} failed attempt(s); the last: {last}")));
            }
            break v;
        };
        failed += 1;
        last = e.to_string();
        let again_at = tokio::time::Instant::now() + pause;
        if !e.is_transient() || again_at >= started + RETRY_WITHIN {
            tracing::warn!(error = %e, attempts = failed, "verification could not be made");
            let tried = match failed {
                1 => String::new(),
                n => format!(" ({n} attempts in {:.1}s)", started.elapsed().as_secs_f64()),
            };
            v.error = Some(text::clip_keeping(&e.to_string(), &tried));
            break v;
        }
        tracing::info!(error = %e, "verification could not be made; asking again");
        tokio::time::sleep_until(again_at).await;
        pause *= 2;
    };
    tracing::debug!(
        took_ms = started.elapsed().as_secs_f64() * 1000.0,
        reviews = v.reviews.len(),
        residual = v.residual.len(),
        "verified"
    );
    Verification { checked_at: Time(k8s_openapi::jiff::Timestamp::now()), ..v }
}

/// How long a verification that could not be made is tried again (a read or a question that
/// failed, timed out, was throttled or forbidden), well inside the call's 10 s deadline. Past it
/// the record says why, and the answer is `FAILURE` unless the policies say `onUnverified: Report`.
const RETRY_WITHIN: Duration = Duration::from_secs(4);

/// The first pause before asking again; each later one is twice as long (0.1, 0.2, 0.4, 0.8,
/// 1.6 s: six attempts fit in [`RETRY_WITHIN`]).
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The least time one attempt is given, even when [`RETRY_WITHIN`] is nearly spent.
const ATTEMPT_AT_LEAST: Duration = Duration::from_secs(1);

async fn check(
    client: &Client,
    view: Option<&View>,
    memory: &Memory,
    req: &Request<'_>,
    matched: &[&DeprovisionPolicy],
    v: &mut Verification,
) -> Result<(), VerifyError> {
    if matched.is_empty() {
        return Err(VerifyError::NoPolicies(req.policy_names.join(", ")));
    }
    let wanted = crate::plan::principals(req.spec, matched)?;
    let identities = reviews::identities(&with_removed_spellings(wanted.clone(), req.plan, req.results));
    v.identities = identities.iter().map(Identity::to_string).collect();
    let removed = removed_bindings(req.plan, req.results);
    let roles = read_roles(client, &memory.roles, &removed, &mut v.notes).await?;
    let grants: Vec<Grant<'_>> =
        removed.iter().filter_map(|b| roles.get(&b.role_ref_key()).map(|rules| Grant { binding: b, rules })).collect();
    let max = (req.reviews_per_binding * grants.len() * identities.len()).min(reviews::MAX_REVIEWS);
    let (questions, skipped) = reviews::questions(&identities, &grants, max);
    if skipped > 0 {
        let per = req.reviews_per_binding;
        v.notes.push(format!(
            "{skipped} more access review(s) of the removed bindings' grants not asked \
             ({per} per removed binding and identity, at most {} in all)",
            reviews::MAX_REVIEWS
        ));
    }
    let judge = Judge { spec: req.spec, matched, all: req.policies, plan: req.plan, results: req.results };
    // Only what a live watch holds: no barrier is written for this wait.
    if let Some(view) = view.filter(|_| !questions.is_empty())
        && let Ok(held) = view.read(Since::Held, Need::BINDINGS, Reader::Verify).await
    {
        index_caught_up(&held, &removed_subjects(req.plan, req.results)).await;
    }
    // One after the other, not at once: the index's barrier is usually the longer of the two,
    // and a fixed order keeps the calls easy to follow in a trace.
    v.reviews = ask_all(client, &memory.lag, &identities, questions, &removed).await?;
    let (residual, more) = residual_bindings(client, view, &wanted, &judge, &removed).await?;
    v.residual = residual;
    if more > 0 {
        v.notes.push(format!("{more} more binding(s) still name the target (at most {MAX_RESIDUAL} listed)"));
    }
    Ok(())
}

/// The identities to ask about: the policies' subjects, plus each User name exactly as it was
/// removed when it differs (a `caseInsensitive` subject matches `Ann@X.com` too, but the
/// authorizer compares names exactly, so each spelling is its own identity to it).
fn with_removed_spellings(mut wanted: Vec<Wanted>, plan: &[PlannedAction], results: &[ActionResult]) -> Vec<Wanted> {
    for a in plan {
        let Action::RemoveBindingSubject(b) = &a.action else { continue };
        if b.subject.kind != "User" || !results.iter().any(|r| r.id == a.id && r.outcome.is_removal()) {
            continue;
        }
        let spelled = Wanted { principal: Principal::user(&b.subject.name), case_insensitive: false };
        // Only another spelling of someone the policies name (a plan removes nobody else).
        let known = wanted.iter().any(|w| w.matches(&spelled.principal));
        if known && !wanted.iter().any(|w| w.principal == spelled.principal) {
            wanted.push(spelled);
        }
    }
    wanted
}

/// The bindings this request removed a subject from (each once).
fn removed_bindings(plan: &[PlannedAction], results: &[ActionResult]) -> Vec<BindingRef> {
    let mut out: Vec<BindingRef> = vec![];
    for (b, _) in removed_subjects(plan, results) {
        if !out.contains(b) {
            out.push(b.clone());
        }
    }
    out
}

/// Each subject this request removed, with the binding it was removed from.
fn removed_subjects<'a>(plan: &'a [PlannedAction], results: &[ActionResult]) -> Vec<(&'a BindingRef, &'a SubjectRef)> {
    let done = |id: i32| results.iter().any(|r| r.id == id && r.outcome.is_removal());
    let binding_action = |a: &'a PlannedAction| match &a.action {
        Action::RemoveBindingSubject(b) if done(a.id) => Some((&b.binding, &b.subject)),
        _ => None,
    };
    plan.iter().filter_map(binding_action).collect()
}

/// Waits until the binding index shows every removal (the binding no longer names the subject,
/// or is gone, or is another binding under the same name), at most [`INDEX_CATCH_UP`]. The
/// authorizer reads bindings from a cache of its own, kept by a watch of the same bindings inside
/// the API server: once the index has a removal, the authorizer has almost always seen it too,
/// and its first answer is true. Asked straight after the write instead, about one answer in
/// five still credited the binding (and cost a question more, and a pause). Says whether it saw
/// them (false: it waited the whole time, or the index stopped).
async fn index_caught_up(index: &Snapshot<'_>, removals: &[(&BindingRef, &SubjectRef)]) -> bool {
    let removed = |&(b, subject): &(&BindingRef, &SubjectRef)| match b.namespace() {
        Some(ns) => (index.role_binding(ns, &b.name))
            .is_none_or(|rb| !still_names(rb.metadata.uid.as_deref(), rb.subjects.as_deref(), b, subject)),
        None => (index.cluster_role_binding(&b.name))
            .is_none_or(|crb| !still_names(crb.metadata.uid.as_deref(), crb.subjects.as_deref(), b, subject)),
    };
    let Some(mut changes) = index.subscribe() else { return false }; // before looking: no change slips between
    let waited = tokio::time::timeout(INDEX_CATCH_UP, async {
        while !removals.iter().all(removed) {
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changes.recv().await {
                return false; // the index stopped
            }
        }
        true
    });
    let shown = waited.await.unwrap_or(false);
    if !shown {
        tracing::debug!("the binding index did not show the removals in time; asking anyway");
    }
    shown
}

/// Whether a binding held with this uid and these subjects is still `b` naming `subject`: the
/// removal not seen yet. Another uid is another binding under the same name.
fn still_names(uid: Option<&str>, subjects: Option<&[Subject]>, b: &BindingRef, subject: &SubjectRef) -> bool {
    uid == Some(b.uid.as_str())
        && subjects.unwrap_or_default().iter().any(|s| crate::plan::subject::is_exactly(s, subject))
}

/// What the verifications of one controller share.
#[derive(Default)]
pub struct Memory {
    /// Roles read a moment ago.
    pub roles: RoleCache,
    /// How far the authorizer's cache has recently lagged.
    pub lag: AuthorizerLag,
}

/// Where a binding's role lives: (`Role` namespace or none, `Kind/name`).
trait RoleRefKey {
    fn role_ref_key(&self) -> (Option<String>, String);
}

impl RoleRefKey for BindingRef {
    fn role_ref_key(&self) -> (Option<String>, String) {
        match self.role_ref.starts_with("Role/") {
            true => (self.namespace().map(str::to_string), self.role_ref.clone()),
            false => (None, self.role_ref.clone()),
        }
    }
}

/// Where a role lives and what it is: (namespace of a `Role`, `Kind/name`).
type RoleKey = (Option<String>, String);

/// How long a role read is reused. Every removal of a burst usually names the same few roles;
/// rules edited within this time may be read as they were just before.
const ROLE_FRESH_FOR: Duration = Duration::from_secs(1);

/// Roles read in the last [`ROLE_FRESH_FOR`] (`None`: the role did not exist), shared by the
/// verifications of one controller.
#[derive(Default)]
pub struct RoleCache {
    roles: std::sync::Mutex<BTreeMap<RoleKey, ReadRole>>,
}

/// When a role was read, and its rules (`None`: it did not exist).
type ReadRole = (std::time::Instant, Option<Vec<PolicyRule>>);

impl RoleCache {
    fn get(&self, key: &RoleKey) -> Option<Option<Vec<PolicyRule>>> {
        let roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        roles.get(key).filter(|(at, _)| at.elapsed() < ROLE_FRESH_FOR).map(|(_, rules)| rules.clone())
    }

    fn put(&self, key: RoleKey, rules: Option<Vec<PolicyRule>>) {
        let mut roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        roles.retain(|_, (at, _)| at.elapsed() < ROLE_FRESH_FOR);
        roles.insert(key, (std::time::Instant::now(), rules));
    }
}

/// The rules of each removed binding's role; a role that no longer exists is noted.
async fn read_roles(
    client: &Client,
    cache: &RoleCache,
    removed: &[BindingRef],
    notes: &mut Vec<String>,
) -> Result<BTreeMap<RoleKey, Vec<PolicyRule>>, VerifyError> {
    let mut out = BTreeMap::new();
    for b in removed {
        let key = b.role_ref_key();
        if out.contains_key(&key) {
            continue;
        }
        let (kind, name) = b.role_ref.split_once('/').unwrap_or(("ClusterRole", &b.role_ref));
        let read = |source| VerifyError::Read { what: format!("{kind} {name}"), source };
        let rules = match cache.get(&key) {
            Some(rules) => rules,
            None => {
                let rules = match (kind, &key.0) {
                    ("Role", Some(ns)) => Api::<Role>::namespaced(client.clone(), ns)
                        .get_opt(name)
                        .await
                        .map_err(read)?
                        .map(|r| r.rules.unwrap_or_default()),
                    _ => Api::<ClusterRole>::all(client.clone())
                        .get_opt(name)
                        .await
                        .map_err(read)?
                        .map(|r| r.rules.unwrap_or_default()),
                };
                cache.put(key.clone(), rules.clone());
                rules
            }
        };
        match rules {
            Some(rules) => {
                out.insert(key, rules);
            }
            None => notes.push(format!("{kind} {name} (of {b}) no longer exists: it grants nothing to check")),
        }
    }
    Ok(out)
}

/// Asks every question; answers that name a binding this request removed are asked again
/// until the authorizer has caught up (or [`AUTHORIZER_CATCH_UP`] passes), first after 5 ms
/// alone or 20 ms while other verifications ask (its cache usually lags by less), then after
/// twice as long each time. While others ask, the first question also waits for the lag
/// learned from them ([`lag`]).
async fn ask_all(
    client: &Client,
    lag: &AuthorizerLag,
    identities: &[Identity],
    mut questions: Vec<Review>,
    removed: &[BindingRef],
) -> Result<Vec<Review>, VerifyError> {
    // Questions come from the removed bindings' roles: none, nothing to ask or to learn.
    if questions.is_empty() {
        return Ok(questions);
    }
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let started = tokio::time::Instant::now();
    let deadline = started + AUTHORIZER_CATCH_UP;
    let asking = lag.begin();
    let wait = asking.first_wait();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await; // a zero sleep may still wait for the timer's next tick
    }
    let mut pending: Vec<usize> = (0..questions.len()).collect();
    let mut pause = asking.first_pause();
    // Whether an answer has credited a removed binding.
    let mut stale = false;
    loop {
        let answers: Vec<(usize, bool, Option<String>, Duration)> = futures::stream::iter(pending.iter().copied())
            .map(|i| {
                let api = api.clone();
                let sar = review_object(&identities[questions[i].identity as usize], &questions[i]);
                async move {
                    let _permit = IN_FLIGHT.acquire().await;
                    let sent = started.elapsed();
                    let done = api.create(&PostParams::default(), &sar).await.map_err(VerifyError::Review)?;
                    let st = done.status.unwrap_or_default();
                    // A denial the authorizer could not decide (a webhook authorizer that failed)
                    // proves nothing: the question was not answered.
                    if let Some(e) = undecided(st.allowed, st.evaluation_error.as_deref()) {
                        return Err(VerifyError::Undecided(e));
                    }
                    let reason = Some(st.reason.unwrap_or_default()).filter(|r| !r.is_empty());
                    Ok::<_, VerifyError>((i, st.allowed, reason, sent))
                }
            })
            .buffer_unordered(REVIEWS_AT_ONCE)
            .try_collect()
            .await?;
        let mut last_sent = Duration::ZERO;
        for (i, allowed, reason, sent) in answers {
            questions[i].allowed = allowed;
            questions[i].reason = reason.map(|r| text::clip_to(&r, 240));
            last_sent = last_sent.max(sent);
        }
        pending = (0..questions.len()).filter(|&i| names_removed(&questions[i], removed)).collect();
        if pending.is_empty() {
            // Every answer is true by this round's asks (the time of the last stale ask is too
            // early to learn: waiting that long would not have done).
            asking.learn(match stale {
                false => lag::Seen::CaughtUp,
                true => lag::Seen::CaughtUpAfter(last_sent),
            });
            return Ok(questions);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            asking.learn(lag::Seen::Unknown);
            return Ok(questions);
        }
        stale = true;
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(400));
    }
}

/// Whether an allowed answer credits a binding this request removed the subject from.
fn names_removed(r: &Review, removed: &[BindingRef]) -> bool {
    let Some((kind, ns, name)) = r.reason.as_deref().and_then(verdict::binding_in_reason) else {
        return false;
    };
    r.allowed && removed.iter().any(|b| b.kind() == kind && b.namespace() == ns && b.name == name)
}

/// The SubjectAccessReview for one question.
fn review_object(who: &Identity, r: &Review) -> SubjectAccessReview {
    let resource = r.resource.as_ref().map(|res| ResourceAttributes {
        namespace: r.namespace.clone(),
        verb: Some(r.verb.clone()),
        group: r.group.clone(),
        resource: Some(res.clone()),
        subresource: r.subresource.clone(),
        name: r.name.clone(),
        ..Default::default()
    });
    let non_resource =
        r.path.as_ref().map(|p| NonResourceAttributes { path: Some(p.clone()), verb: Some(r.verb.clone()) });
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(who.user.clone()).filter(|u| !u.is_empty()),
            groups: Some(who.groups.clone()).filter(|g| !g.is_empty()),
            resource_attributes: resource,
            non_resource_attributes: non_resource,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Every binding that still names the target, sorted, at most [`MAX_RESIDUAL`] (and how many
/// more). From the binding index when it is current (it lags the API server by milliseconds),
/// with the bindings this request changed taken from its results rather than from the index,
/// whose copy of them may be a moment old; so no barrier write is spent here, unless a watch
/// failed and has not delivered since. A binding someone else writes in the last milliseconds
/// may be missed: the authorizer's answers still count it, and the re-grant watch sees it.
/// Without an index (or one relisting), a paged list of every binding.
async fn residual_bindings(
    client: &Client,
    view: Option<&View>,
    wanted: &[Wanted],
    judge: &Judge<'_>,
    removed: &[BindingRef],
) -> Result<(Vec<ResidualBinding>, usize), VerifyError> {
    let mut found = vec![];
    let ours = |v: &BindingView<'_>| {
        let name = v.meta.name.as_deref().unwrap_or_default();
        removed.iter().any(|b| b.namespace() == v.namespace && b.name == name)
    };
    let mut consider = |v: BindingView<'_>| {
        if !ours(&v)
            && let Some(r) = residual::residual(&v, wanted, judge)
        {
            found.push(r);
        }
    };
    // A watch that failed and has not delivered since is made current by a barrier (its own
    // write, delivered after everything before it), rather than trusted.
    let index = match view {
        Some(view) => view.read(Since::Live, Need::BINDINGS, Reader::Verify).await.ok(),
        None => None,
    };
    match index {
        Some(ix) => {
            // Only the bindings filed under the target's subjects can name them.
            let keys = wanted.iter().map(Wanted::key).collect();
            let named = ix.naming(&keys, None, true);
            named.role_bindings.iter().for_each(|b| consider(residual::role_binding(b)));
            named.cluster_role_bindings.iter().for_each(|b| consider(residual::cluster_role_binding(b)));
        }
        _ => found = search_paged(client, wanted, judge).await.map_err(VerifyError::List)?,
    }
    found.sort();
    let more = found.len().saturating_sub(MAX_RESIDUAL);
    found.truncate(MAX_RESIDUAL);
    Ok((found, more))
}

/// The residual search without an index: every RoleBinding and ClusterRoleBinding in the
/// cluster, a page at a time (only the matches are kept).
pub async fn search_paged(
    client: &Client,
    wanted: &[Wanted],
    judge: &Judge<'_>,
) -> Result<Vec<ResidualBinding>, kube::Error> {
    let mut found = vec![];
    let mut lp = ListParams::default().limit(PAGE);
    let rbs: Api<RoleBinding> = Api::all(client.clone());
    loop {
        let page = rbs.list(&lp).await?;
        found.extend(page.items.iter().filter_map(|b| residual::residual(&residual::role_binding(b), wanted, judge)));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => break,
        }
    }
    let mut lp = ListParams::default().limit(PAGE);
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    loop {
        let page = crbs.list(&lp).await?;
        found.extend(
            page.items.iter().filter_map(|b| residual::residual(&residual::cluster_role_binding(b), wanted, judge)),
        );
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests;
