//! Custom resource types: the request (the audit record) and the policy (what an app means here).

mod action;
mod activity;
mod clock;
mod condition;
mod fleet;
mod policy;
mod request;
mod verification;

pub use action::*;
pub use activity::*;
pub use clock::*;
pub use condition::*;
pub use fleet::*;
pub use policy::*;
pub use request::*;
pub use verification::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

/// API group of every resource this operator defines.
pub const GROUP: &str = "access.deprovisioner.dev";

/// Every CRD the operator needs, in install order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        DeprovisionRequest::crd(),
        DeprovisionPolicy::crd(),
        AccessClock::crd(),
        MemberCluster::crd(),
        ClusterSet::crd(),
        MemberRequest::crd(),
    ]
}

/// Every CRD as one multi-document YAML stream (what `deprovisioner crd` prints).
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
