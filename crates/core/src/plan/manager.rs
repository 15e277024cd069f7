//! Who manages a binding (pure): a GitOps tool, Helm, another controller, or whoever last wrote
//! its subjects. A binding some tool keeps in sync gets its subjects back after a removal unless
//! its source changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{ManagedBy, ManagerKind};

/// The field manager the operator writes bindings as (never reported as a binding's manager).
pub const OWN_FIELD_MANAGER: &str = "deprovisioner";

/// Argo CD's annotation tracking (`<app>:<group>/<kind>:<namespace>/<name>`).
pub const ARGOCD_TRACKING: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's label tracking (its default label).
const ARGOCD_INSTANCE: &str = "app.kubernetes.io/instance";
/// Flux's kustomize-controller labels.
const FLUX_KUSTOMIZE: (&str, &str) = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace");
/// Flux's helm-controller labels.
const FLUX_HELM: (&str, &str) = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace");
/// Helm's release annotations.
pub const HELM_RELEASE: (&str, &str) = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace");
/// The label every chart sets.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// FairwindsOps rbac-manager's label on the bindings it owns.
const RBAC_MANAGER: &str = "rbac-manager";

/// The annotations the binding index keeps (with its barrier's): what recognising a manager reads,
/// and the end times the granting tool wrote (`deprovisioner.dev/expires`).
pub const KEPT_ANNOTATIONS: [&str; 4] =
    [ARGOCD_TRACKING, HELM_RELEASE.0, HELM_RELEASE.1, crate::expiry::grant::ANNOTATION];

/// Field managers of controllers that keep bindings in sync (the last writer of `subjects`).
const SYNCING_FIELD_MANAGERS: [&str; 5] =
    ["argocd-controller", "argocd-application-controller", "kustomize-controller", "helm-controller", "rbac-manager"];

/// Who manages the binding with this metadata, if anyone is recognisable. `own` is the operator's
/// own field manager (never reported).
pub fn of(meta: &ObjectMeta, own: &str) -> Option<ManagedBy> {
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str);
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).map(String::as_str);
    let managed = |kind, name: &str, detail: Option<String>| Some(ManagedBy { kind, name: name.into(), detail });
    if let Some(id) = annotation(ARGOCD_TRACKING) {
        let app = id.split_once(':').map_or(id, |(app, _)| app);
        return managed(ManagerKind::ArgoCd, app, None);
    }
    for (name, ns) in [FLUX_KUSTOMIZE, FLUX_HELM] {
        if let Some(n) = label(name) {
            let kind = if name == FLUX_KUSTOMIZE.0 { "Kustomization" } else { "HelmRelease" };
            let detail = Some(format!("{kind} {}/{n}", label(ns).unwrap_or("?")));
            return managed(ManagerKind::Flux, n, detail);
        }
    }
    let helm = label(MANAGED_BY).is_some_and(|m| m.eq_ignore_ascii_case("helm"));
    if helm || annotation(HELM_RELEASE.0).is_some() {
        let release = annotation(HELM_RELEASE.0).or(label(ARGOCD_INSTANCE)).unwrap_or("?");
        let detail = annotation(HELM_RELEASE.1).map(|ns| format!("release {ns}/{release}"));
        return managed(ManagerKind::Helm, release, detail);
    }
    if let Some(app) = label(ARGOCD_INSTANCE) {
        return managed(ManagerKind::ArgoCd, app, Some("by its app.kubernetes.io/instance label".into()));
    }
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    if let Some(o) = owners.iter().find(|o| o.controller == Some(true)).or(owners.first()) {
        return managed(ManagerKind::Owner, &o.name, Some(format!("{} {}", o.kind, o.name)));
    }
    if let Some(v) = label(RBAC_MANAGER) {
        return managed(ManagerKind::RbacManager, v, None);
    }
    let (manager, operation) = last_writer(meta, own)?;
    managed(ManagerKind::FieldManager, &manager, operation)
}

/// The field manager that last wrote the binding's `subjects` (and how: `Update`, `Apply`),
/// other than `own`.
pub fn last_writer(meta: &ObjectMeta, own: &str) -> Option<(String, Option<String>)> {
    let last = meta
        .managed_fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|f| f.manager.as_deref().is_some_and(|m| m != own))
        .filter(|f| f.fields_v1.as_ref().is_none_or(|v| v.0.get("f:subjects").is_some()))
        .max_by_key(|f| f.time.as_ref().map(|t| t.0))?;
    Some((last.manager.clone()?, last.operation.clone()))
}

impl ManagedBy {
    /// Whether this manager keeps the binding in sync with a source elsewhere (a removal will be
    /// undone unless the source changes). A plain field manager (a person's kubectl) does not,
    /// unless it is a known syncing controller's.
    pub fn syncs(&self) -> bool {
        match self.kind {
            ManagerKind::FieldManager => SYNCING_FIELD_MANAGERS.contains(&self.name.as_str()),
            _ => true,
        }
    }
}

impl std::fmt::Display for ManagedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            ManagerKind::ArgoCd => "Argo CD application",
            ManagerKind::Flux => "Flux",
            ManagerKind::Helm => "Helm release",
            ManagerKind::Owner => "its owner",
            ManagerKind::RbacManager => "rbac-manager",
            ManagerKind::FieldManager => "field manager",
        };
        match (self.kind, &self.detail) {
            (ManagerKind::Flux | ManagerKind::Owner, Some(d)) => write!(f, "{what} {d}"),
            (ManagerKind::Helm, Some(d)) => write!(f, "Helm {d}"),
            (_, Some(d)) => write!(f, "{what} {} ({d})", self.name),
            (_, None) => write!(f, "{what} {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests;
