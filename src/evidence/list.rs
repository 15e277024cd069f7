//! Reads the records: every DeprovisionRequest, a page at a time.

use kube::api::{ListParams, ObjectList};
use kube::{Api, Client};

use crate::crd::DeprovisionRequest;

/// Requests asked for per page.
pub const PAGE: u32 = 250;

/// Every DeprovisionRequest in the cluster, listed `PAGE` at a time (`limit`/`continue`).
pub async fn requests(client: &Client) -> Result<Vec<DeprovisionRequest>, kube::Error> {
    every(&Api::all(client.clone())).await
}

/// Every object `api` lists, `PAGE` at a time (`limit`/`continue`).
async fn every<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page: ObjectList<K> = api.list(&lp).await?;
        all.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(all);
        }
    }
}

/// On a fleet hub: each member's finished record of the requests handed to it, as its agent
/// reported it into the `MemberRequest`'s status, named `<cluster>/<record>` (so its rows say
/// which cluster). Empty where no `MemberRequest` CRD is installed.
pub async fn member_records(client: &Client) -> Result<Vec<DeprovisionRequest>, kube::Error> {
    match every(&Api::<crate::crd::MemberRequest>::all(client.clone())).await {
        Ok(all) => Ok(all.into_iter().filter_map(member_record).collect()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A member's record as the hub holds it, if the member reported it finished.
pub fn member_record(mr: crate::crd::MemberRequest) -> Option<DeprovisionRequest> {
    let status = mr.status?;
    let record = status.report.record?;
    let mut spec = mr.spec.request;
    spec.hub_source = Some(spec.source);
    spec.source = crate::crd::RequestSource::Fleet;
    let mut r = DeprovisionRequest::new(&format!("{}/{record}", mr.spec.cluster), spec);
    r.metadata.creation_timestamp = mr.metadata.creation_timestamp;
    r.metadata.uid = status.report.record_uid;
    r.status = Some(*status.record_status?);
    Some(r)
}
