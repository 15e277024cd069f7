//! Reads the records: every DeprovisionRequest, a page at a time.

use kube::api::{ListParams, ObjectList};
use kube::{Api, Client};

use crate::crd::DeprovisionRequest;

/// Requests asked for per page.
pub const PAGE: u32 = 250;

/// Every DeprovisionRequest in the cluster, listed `PAGE` at a time (`limit`/`continue`).
pub async fn requests(client: &Client) -> Result<Vec<DeprovisionRequest>, kube::Error> {
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page: ObjectList<DeprovisionRequest> = api.list(&lp).await?;
        all.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(all);
        }
    }
}
