use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, OwnerReference, Time};
use serde_json::json;

use super::*;

fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
    let map = |kv: &[(&str, &str)]| {
        Some(kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .filter(|m: &std::collections::BTreeMap<_, _>| !m.is_empty())
    };
    ObjectMeta { labels: map(labels), annotations: map(annotations), ..Default::default() }
}

fn said(m: &ObjectMeta) -> Option<String> {
    of(m, OWN_FIELD_MANAGER).map(|m| format!("{m} [syncs: {}]", m.syncs()))
}

#[test]
fn each_kind_of_manager_is_recognised() {
    let argo = meta(&[], &[(ARGOCD_TRACKING, "web:rbac.authorization.k8s.io/RoleBinding:team/edit")]);
    assert_eq!(said(&argo).unwrap(), "Argo CD application web [syncs: true]");
    let argo_label = meta(&[("app.kubernetes.io/instance", "web")], &[]);
    assert_eq!(
        said(&argo_label).unwrap(),
        "Argo CD application web (by its app.kubernetes.io/instance label) [syncs: true]"
    );
    let flux = meta(&[(FLUX_KUSTOMIZE.0, "apps"), (FLUX_KUSTOMIZE.1, "flux-system")], &[]);
    assert_eq!(said(&flux).unwrap(), "Flux Kustomization flux-system/apps [syncs: true]");
    let flux_helm = meta(&[(FLUX_HELM.0, "web"), (FLUX_HELM.1, "team")], &[]);
    assert_eq!(said(&flux_helm).unwrap(), "Flux HelmRelease team/web [syncs: true]");
    let helm = meta(
        &[("app.kubernetes.io/managed-by", "Helm"), ("app.kubernetes.io/instance", "web")],
        &[(HELM_RELEASE.0, "web"), (HELM_RELEASE.1, "team")],
    );
    assert_eq!(said(&helm).unwrap(), "Helm release team/web [syncs: true]", "Helm's instance label is not Argo CD's");
    let mut owned = meta(&[], &[]);
    owned.owner_references = Some(vec![OwnerReference {
        kind: "Tenant".into(),
        name: "team-a".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    assert_eq!(said(&owned).unwrap(), "its owner Tenant team-a [syncs: true]");
    let rbac_manager = meta(&[("rbac-manager", "reactiveops")], &[]);
    assert_eq!(said(&rbac_manager).unwrap(), "rbac-manager reactiveops [syncs: true]");
    assert_eq!(said(&meta(&[], &[])), None);
}

#[test]
fn otherwise_the_last_writer_of_subjects_is_named() {
    let entry = |manager: &str, secs: i64, fields: Option<serde_json::Value>| ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Update".into()),
        time: Some(Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())),
        fields_v1: fields.map(FieldsV1),
        ..Default::default()
    };
    let mut m = meta(&[], &[]);
    m.managed_fields = Some(vec![
        entry("kubectl-create", 10, Some(json!({"f:roleRef": {}, "f:subjects": {}}))),
        entry("kubectl-edit", 20, Some(json!({"f:subjects": {}}))),
        entry("kubectl-label", 30, Some(json!({"f:metadata": {}}))),
        entry(OWN_FIELD_MANAGER, 40, Some(json!({"f:subjects": {}}))),
    ]);
    assert_eq!(
        said(&m).unwrap(),
        "field manager kubectl-edit (Update) [syncs: false]",
        "a person's kubectl does not sync"
    );
    m.managed_fields.as_mut().unwrap().push(entry("kustomize-controller", 50, None));
    assert_eq!(said(&m).unwrap(), "field manager kustomize-controller (Update) [syncs: true]");
}
