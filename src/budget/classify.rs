//! Which priority an API request gets (pure): the method and path say what it is.

use http::Method;

/// An API request's priority in the budget, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Creates of DeprovisionRequests: a webhook call is not recorded until its create is done.
    Create = 0,
    /// Writes of a request's status (the record).
    Status = 1,
    /// Everything else: binding edits, barrier writes, reads.
    Other = 2,
    /// SubjectAccessReviews (the verification's questions).
    Review = 3,
    /// Events (they only announce what the status records).
    Event = 4,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 5] =
        [Priority::Create, Priority::Status, Priority::Other, Priority::Review, Priority::Event];

    /// The `priority` label of the budget's metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Create => "create",
            Priority::Status => "status",
            Priority::Other => "other",
            Priority::Review => "review",
            Priority::Event => "event",
        }
    }
}

/// The priority of a request, or `None` when it bypasses the budget: watches (they stay open)
/// and the leader Lease (its renewal must never wait behind work).
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> Option<Priority> {
    let watching = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let target = Target::of(path);
    if watching || target.group == "coordination.k8s.io" {
        return None;
    }
    Some(match (target.resource, target.named, target.subresource) {
        ("deprovisionrequests", false, None) if method == Method::POST => Priority::Create,
        ("deprovisionrequests", true, Some("status")) if method == Method::PUT || method == Method::PATCH => {
            Priority::Status
        }
        ("subjectaccessreviews" | "localsubjectaccessreviews" | "selfsubjectaccessreviews", _, _) => Priority::Review,
        ("events", _, _) if method != Method::GET => Priority::Event,
        _ => Priority::Other,
    })
}

/// What a Kubernetes API path names.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    /// The API group (`""` for the core group).
    group: &'a str,
    /// The resource, e.g. `deprovisionrequests`.
    resource: &'a str,
    /// Whether one object is named.
    named: bool,
    /// Its subresource, e.g. `status`.
    subresource: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn of(path: &'a str) -> Target<'a> {
        let mut segs = path.trim_matches('/').split('/');
        let group = match segs.next() {
            Some("apis") => segs.next().unwrap_or_default(),
            _ => "",
        };
        let _version = segs.next();
        let rest: Vec<&str> = segs.collect();
        // `namespaces/<ns>/<resource>...`; `namespaces` or `namespaces/<ns>` alone name namespaces.
        let rest = match rest.as_slice() {
            ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
            all => all,
        };
        Target {
            group,
            resource: rest.first().copied().unwrap_or_default(),
            named: rest.len() > 1,
            subresource: rest.get(2).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DPR: &str = "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests";

    #[test]
    fn creates_then_status_writes_then_other_work_then_reviews_then_events() {
        let c = |m: Method, p: &str| classify(&m, p, None);
        assert_eq!(c(Method::POST, DPR), Some(Priority::Create));
        assert_eq!(c(Method::PUT, &format!("{DPR}/lumos-ab-1/status")), Some(Priority::Status));
        assert_eq!(c(Method::GET, &format!("{DPR}/lumos-ab-1")), Some(Priority::Other), "a read of the record");
        assert_eq!(c(Method::GET, DPR), Some(Priority::Other), "a list of records");
        let rb = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb";
        assert_eq!(c(Method::PUT, rb), Some(Priority::Other));
        assert_eq!(c(Method::GET, "/api/v1/namespaces"), Some(Priority::Other));
        assert_eq!(c(Method::GET, "/api/v1/namespaces/team"), Some(Priority::Other));
        let sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
        assert_eq!(c(Method::POST, sar), Some(Priority::Review));
        assert_eq!(c(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events"), Some(Priority::Event));
        assert_eq!(c(Method::PATCH, "/apis/events.k8s.io/v1/namespaces/default/events/e1"), Some(Priority::Event));
        assert_eq!(c(Method::POST, "/api/v1/namespaces/default/events"), Some(Priority::Event));
        assert!(Priority::ALL.windows(2).all(|w| w[0] < w[1]), "highest first");
    }

    #[test]
    fn watches_and_the_lease_bypass_the_budget() {
        let lease = "/apis/coordination.k8s.io/v1/namespaces/deprovisioner/leases/deprovisioner";
        assert_eq!(classify(&Method::PUT, lease, None), None);
        assert_eq!(classify(&Method::GET, lease, None), None);
        let watch = Some("fieldSelector=status.phase%21%3DSucceeded&watch=true&resourceVersion=5");
        assert_eq!(classify(&Method::GET, DPR, watch), None);
        assert_eq!(classify(&Method::GET, DPR, Some("limit=500")), Some(Priority::Other), "a list is not a watch");
    }
}
