//! Cluster I/O for the read capabilities: bindings and namespaces, listed a page at a time
//! (`limit`/`continue`), and the access review behind `validate_credentials`.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::wire::ConnectorError;

/// Objects asked for per list call.
pub const LIST_PAGE: u32 = 500;

/// The bindings of the cluster, as one paged read found them.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    /// Every RoleBinding.
    pub role_bindings: Vec<RoleBinding>,
    /// Every ClusterRoleBinding.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// Every RoleBinding and ClusterRoleBinding.
pub async fn bindings(client: &Client) -> Result<Bindings, ConnectorError> {
    let (role_bindings, cluster_role_bindings) = tokio::try_join!(
        list_all::<RoleBinding>(Api::all(client.clone()), "listing RoleBindings"),
        list_all::<ClusterRoleBinding>(Api::all(client.clone()), "listing ClusterRoleBindings"),
    )?;
    Ok(Bindings { role_bindings, cluster_role_bindings })
}

/// Every namespace's name, sorted.
pub async fn namespace_names(client: &Client) -> Result<Vec<String>, ConnectorError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut lp = ListParams::default().limit(LIST_PAGE);
    let mut out = Vec::new();
    loop {
        let page = api.list_metadata(&lp).await.map_err(|e| ConnectorError::from_kube("listing Namespaces", &e))?;
        out.extend(page.items.into_iter().filter_map(|n| n.metadata.name));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Every object of a kind, listed [`LIST_PAGE`] at a time, stripped as the binding index strips.
async fn list_all<K>(api: Api<K>, what: &str) -> Result<Vec<K>, ConnectorError>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let mut lp = ListParams::default().limit(LIST_PAGE);
    let mut out = Vec::new();
    loop {
        let page = api.list(&lp).await.map_err(|e| ConnectorError::from_kube(what, &e))?;
        out.extend(page.items.into_iter().map(|mut o| {
            crate::view::strip(&mut o);
            o
        }));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => return Ok(out),
        }
    }
}

/// A permission the connector needs: verb, API group, resource.
pub type Need = (&'static str, &'static str, &'static str);

/// What the capabilities need: reading bindings and namespaces, and recording requests.
pub const NEEDS: &[Need] = &[
    ("list", "rbac.authorization.k8s.io", "rolebindings"),
    ("list", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("list", "", "namespaces"),
    ("create", "access.deprovisioner.dev", "deprovisionrequests"),
    ("get", "access.deprovisioner.dev", "deprovisionrequests"),
];

/// The needs the connector's identity is not allowed, each as `verb group/resource`.
pub async fn missing(client: &Client, needs: &[Need]) -> Result<Vec<String>, ConnectorError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut out = Vec::new();
    for (verb, group, resource) in needs {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ConnectorError::from_kube("reviewing the connector's own access", &e))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            let g = if group.is_empty() { String::new() } else { format!("{group}/") };
            out.push(format!("{verb} {g}{resource}"));
        }
    }
    Ok(out)
}

/// A stable id of the cluster: the uid of its `kube-system` namespace (the usual cluster id),
/// read with `list` (the operator is not granted `get` on namespaces).
pub async fn cluster_id(client: &Client) -> Result<Option<String>, ConnectorError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().fields("metadata.name=kube-system");
    let list =
        api.list_metadata(&lp).await.map_err(|e| ConnectorError::from_kube("reading namespace kube-system", &e))?;
    Ok(list.items.into_iter().next().and_then(|n| n.metadata.uid))
}
