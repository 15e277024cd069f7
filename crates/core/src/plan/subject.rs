//! Who a binding's subject really is, whether it is the target user, and whether it is protected.

use k8s_openapi::api::rbac::v1::Subject;

use crate::crd::{SubjectKind, SubjectRef};

const SA_USER_PREFIX: &str = "system:serviceaccount:";

/// Whether a name is reserved for the system (`system:` in any case): never removed.
pub fn is_system_name(name: &str) -> bool {
    name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("system:"))
}

/// A subject in canonical form: the `system:serviceaccount:ns:name` user is its ServiceAccount,
/// and a ServiceAccount with no namespace has the binding's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// A user name.
    User(String),
    /// A group name.
    Group(String),
    /// A ServiceAccount (namespace, name).
    ServiceAccount(String, String),
}

impl Principal {
    /// Canonical form of a User name (which may be a ServiceAccount in disguise).
    pub fn user(name: &str) -> Principal {
        PrincipalRef::user(name).to_owned()
    }

    /// Canonical form of a binding subject; `None` for kinds RBAC does not know or an unusable
    /// ServiceAccount (no namespace in a ClusterRoleBinding).
    pub fn of_subject(s: &Subject, binding_namespace: Option<&str>) -> Option<Principal> {
        PrincipalRef::of_subject(s, binding_namespace).map(|p| p.to_owned())
    }

    /// Reads a Lumos connector account id (`User:<name>`, `Group:<name>` or
    /// `ServiceAccount:<namespace>/<name>`); `None` for any other text. Only the canonical
    /// spelling is accepted: a `User:system:serviceaccount:…` id is refused, not reinterpreted.
    pub fn from_account_id(s: &str) -> Option<Principal> {
        let (kind, rest) = s.split_once(':')?;
        if rest.is_empty() {
            return None;
        }
        match kind {
            "User" => match Principal::user(rest) {
                p @ Principal::User(_) => Some(p),
                _ => None,
            },
            "Group" => Some(Principal::Group(rest.to_string())),
            "ServiceAccount" => match rest.split_once('/') {
                Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => {
                    Some(Principal::ServiceAccount(ns.to_string(), n.to_string()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn as_ref(&self) -> PrincipalRef<'_> {
        match self {
            Principal::User(n) => PrincipalRef::User(n),
            Principal::Group(n) => PrincipalRef::Group(n),
            Principal::ServiceAccount(ns, n) => PrincipalRef::ServiceAccount(ns, n),
        }
    }
}

/// A [`Principal`] borrowed from the subject it was read from: matching thousands of bindings'
/// subjects copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalRef<'a> {
    /// A user name.
    User(&'a str),
    /// A group name.
    Group(&'a str),
    /// A ServiceAccount (namespace, name).
    ServiceAccount(&'a str, &'a str),
}

impl<'a> PrincipalRef<'a> {
    /// Canonical form of a User name (which may be a ServiceAccount in disguise).
    pub fn user(name: &'a str) -> PrincipalRef<'a> {
        match name.strip_prefix(SA_USER_PREFIX).and_then(|rest| rest.split_once(':')) {
            Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains(':') => {
                PrincipalRef::ServiceAccount(ns, sa)
            }
            _ => PrincipalRef::User(name),
        }
    }

    /// Canonical form of a binding subject (see [`Principal::of_subject`]).
    pub fn of_subject(s: &'a Subject, binding_namespace: Option<&'a str>) -> Option<PrincipalRef<'a>> {
        match s.kind.as_str() {
            "User" => Some(PrincipalRef::user(&s.name)),
            "Group" => Some(PrincipalRef::Group(&s.name)),
            "ServiceAccount" => {
                let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).or(binding_namespace)?;
                Some(PrincipalRef::ServiceAccount(ns, &s.name))
            }
            _ => None,
        }
    }

    /// The key this identity is found under in an index of bindings by subject: equal for any
    /// two identities that [`Wanted::matches_ref`] can call the same (kind, and names compared
    /// ignoring ASCII case), so looking up a wanted identity's key finds every binding that may
    /// name it. Different identities may share a key (a hash): whoever looks up still matches.
    pub fn key(self) -> SubjectKey {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        let folded = |h: &mut std::hash::DefaultHasher, s: &str| {
            s.len().hash(h);
            s.bytes().for_each(|b| h.write_u8(b.to_ascii_lowercase()));
        };
        match self {
            PrincipalRef::User(n) => {
                h.write_u8(0);
                folded(&mut h, n);
            }
            PrincipalRef::Group(n) => {
                h.write_u8(1);
                folded(&mut h, n);
            }
            PrincipalRef::ServiceAccount(ns, n) => {
                h.write_u8(2);
                (ns, n).hash(&mut h);
            }
        }
        SubjectKey(h.finish())
    }

    /// The owned form.
    pub fn to_owned(self) -> Principal {
        match self {
            PrincipalRef::User(n) => Principal::User(n.into()),
            PrincipalRef::Group(n) => Principal::Group(n.into()),
            PrincipalRef::ServiceAccount(ns, n) => Principal::ServiceAccount(ns.into(), n.into()),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::User(n) => write!(f, "User {n}"),
            Principal::Group(n) => write!(f, "Group {n}"),
            Principal::ServiceAccount(ns, n) => write!(f, "ServiceAccount {ns}/{n}"),
        }
    }
}

/// Where an index of bindings by subject files an identity: see [`PrincipalRef::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectKey(pub u64);

/// The keys of a binding's subjects (subjects RBAC does not know have none).
pub fn keys_of<'a>(
    subjects: &'a [Subject],
    binding_namespace: Option<&'a str>,
) -> impl Iterator<Item = SubjectKey> + 'a {
    subjects.iter().filter_map(move |s| PrincipalRef::of_subject(s, binding_namespace)).map(PrincipalRef::key)
}

/// A subject the target user is known as, resolved from a policy's subject template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wanted {
    /// Canonical identity.
    pub principal: Principal,
    /// Compare User and Group names ignoring ASCII case.
    pub case_insensitive: bool,
}

impl Wanted {
    /// Builds the wanted identity from a rendered name (prefix already applied); `None` when a
    /// `LumosAccount` name is not an account id. A `LumosAccount` is always matched exactly: the
    /// connector lists `User:alice@x` and `User:Alice@X` as two accounts, and unassigning one
    /// must not remove the other (policies saying otherwise are refused as invalid too).
    pub fn new(kind: SubjectKind, name: String, namespace: Option<String>, case_insensitive: bool) -> Option<Wanted> {
        let (principal, case_insensitive) = match kind {
            SubjectKind::User => (Principal::user(&name), case_insensitive),
            SubjectKind::Group => (Principal::Group(name), case_insensitive),
            SubjectKind::ServiceAccount => {
                (Principal::ServiceAccount(namespace.unwrap_or_default(), name), case_insensitive)
            }
            SubjectKind::LumosAccount => (Principal::from_account_id(&name)?, false),
        };
        Some(Wanted { principal, case_insensitive })
    }

    /// The key the bindings that may name this identity are filed under.
    pub fn key(&self) -> SubjectKey {
        self.principal.as_ref().key()
    }

    /// Whether a binding subject (in canonical form) is this identity.
    pub fn matches(&self, p: &Principal) -> bool {
        self.matches_ref(p.as_ref())
    }

    /// Whether a borrowed identity is this one.
    pub fn matches_ref(&self, p: PrincipalRef<'_>) -> bool {
        let eq = |a: &str, b: &str| {
            if self.case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b }
        };
        match (self.principal.as_ref(), p) {
            (PrincipalRef::User(a), PrincipalRef::User(b)) | (PrincipalRef::Group(a), PrincipalRef::Group(b)) => {
                eq(a, b)
            }
            (PrincipalRef::ServiceAccount(an, a), PrincipalRef::ServiceAccount(bn, b)) => an == bn && a == b,
            _ => false,
        }
    }
}

/// Subjects the operator never removes.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    /// The operator's own ServiceAccount (namespace, name).
    pub operator: Option<(String, String)>,
    /// The deployment's other identities (Lumos's agent): never listed, never removed.
    pub also: Vec<(String, String)>,
}

impl Protected {
    /// Why this principal must not be touched, or `None` when it may be.
    pub fn why(&self, p: &Principal) -> Option<String> {
        match p {
            Principal::User(n) | Principal::Group(n) if is_system_name(n) => {
                Some(format!("{n:?} is a system: subject, which the operator never removes"))
            }
            Principal::ServiceAccount(ns, n)
                if self.operator.as_ref().is_some_and(|(ons, on)| ons == ns && on == n) =>
            {
                Some(format!("ServiceAccount {ns}/{n} is the operator's own identity"))
            }
            Principal::ServiceAccount(ns, n) if self.also.iter().any(|(ans, an)| ans == ns && an == n) => {
                Some(format!("ServiceAccount {ns}/{n} is one of the deprovisioner's own identities"))
            }
            Principal::ServiceAccount(ns, n) if ns == "kube-system" => {
                Some(format!("ServiceAccount {ns}/{n} belongs to kube-system, which the operator never touches"))
            }
            _ => None,
        }
    }
}

/// The ServiceAccount a projected token belongs to (its `sub` claim,
/// `system:serviceaccount:<ns>:<name>`). Only the payload is decoded: the token is our own.
pub fn service_account_of_token(token: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match Principal::user(claims.get("sub")?.as_str()?) {
        Principal::ServiceAccount(ns, name) => Some((ns, name)),
        _ => None,
    }
}

/// The subject exactly as it stands in a binding, for the record and for exact removal.
pub fn subject_ref(s: &Subject) -> SubjectRef {
    SubjectRef { kind: s.kind.clone(), name: s.name.clone(), namespace: s.namespace.clone() }
}

/// Whether `s` is exactly the recorded subject (same kind, name and namespace as written).
pub fn is_exactly(s: &Subject, r: &SubjectRef) -> bool {
    s.kind == r.kind && s.name == r.name && s.namespace.as_deref().unwrap_or("") == r.namespace.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests;
