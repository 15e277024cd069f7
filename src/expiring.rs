//! `deprovisioner expiring --within 7d`: what will expire within the window (and anything
//! overdue), from the policies, bindings, namespaces and clocks as stored now (a subject with no
//! clock yet is shown from the evidence the leader would use), with the last attempt at each
//! overdue one (a failed one says why), rendered as `--format` says.
//!
//! The scan is the leader's ([`crate::controller::expiry::scan_all`]); here the reads and the
//! three formats.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::cli::{ExpiringArgs, ExpiringFormat};
use crate::controller::expiry::{clocks, request_name, scan_all};
use crate::crd::{DeprovisionPolicy, DeprovisionRequest, DeprovisionRequestStatus, Expiry};
use crate::expiry::attempt::{self, MAX_ATTEMPTS};
use crate::plan::subject::Protected;

/// One expiry listed, and the last request recorded for it, if any.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row<'a> {
    /// The expiry.
    #[serde(flatten)]
    pub expiry: &'a Expiry,
    /// The last attempt at it: its name, its number and phase, and a failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<String>,
}

/// The listing, as `--format` says.
pub async fn run(client: &Client, args: &ExpiringArgs) -> anyhow::Result<String> {
    let lp = ListParams::default();
    let policies = Api::<DeprovisionPolicy>::all(client.clone()).list(&lp).await.context("listing policies")?.items;
    let rbs = Api::<RoleBinding>::all(client.clone()).list(&lp).await.context("listing RoleBindings")?.items;
    let crbs =
        Api::<ClusterRoleBinding>::all(client.clone()).list(&lp).await.context("listing ClusterRoleBindings")?.items;
    let namespaces = Api::<Namespace>::all(client.clone()).list(&lp).await.context("listing namespaces")?.items;
    let expiries = ListParams::default().labels("access.deprovisioner.dev/source=expiry");
    let requests: BTreeMap<String, Option<DeprovisionRequestStatus>> =
        (Api::<DeprovisionRequest>::all(client.clone()).list(&expiries).await.context("listing expiry requests")?)
            .items
            .into_iter()
            .map(|r| (r.name_any(), r.status))
            .collect();
    let store = clocks::Shards::load(client.clone(), &args.clocks).await.context("reading the clocks")?;
    let protected =
        Protected { operator: Some(args.service_account.clone()), also: args.protect_service_account.clone() };
    let now = Timestamp::now();
    let old = |uid: &str| store.get(uid);
    let scan = scan_all(rbs.iter(), crbs.iter(), &policies, namespaces, &old, &|_| false, &protected, now);
    let until = now + SignedDuration::try_from(args.within).unwrap_or(SignedDuration::MAX);
    let rows: Vec<Row> = (scan.scheduled.iter().filter(|e| e.due_at.0 <= until))
        .map(|e| Row { expiry: e, last_attempt: last_attempt(&request_name(e), &requests) })
        .collect();
    Ok(render(&rows, args.format, now))
}

/// The last attempt recorded of the expiry whose first request is `base`, e.g.
/// `expiry-…-2 (attempt 2 of 5) Failed: …`.
pub fn last_attempt(base: &str, requests: &BTreeMap<String, Option<DeprovisionRequestStatus>>) -> Option<String> {
    let (n, name, status) = (1..=MAX_ATTEMPTS)
        .rev()
        .filter_map(|n| {
            let name = attempt::name(base, n);
            requests.get(&name).map(|st| (n, name, st))
        })
        .next()?;
    let phase = status.as_ref().map_or("Pending".to_string(), |s| format!("{:?}", s.phase));
    let message = (status.as_ref().filter(|s| s.phase == crate::crd::Phase::Failed))
        .and_then(|s| s.message.as_deref())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(format!("{name} (attempt {n} of {MAX_ATTEMPTS}) {phase}{message}"))
}

/// The listing of `rows`.
pub fn render(rows: &[Row], format: ExpiringFormat, now: Timestamp) -> String {
    let when = |e: &Expiry| {
        let left = e.due_at.0.duration_since(now).as_secs();
        match left {
            ..0 => format!("overdue {}", human(-left)),
            _ => format!("in {}", human(left)),
        }
    };
    let row = |r: &Row| {
        let e = r.expiry;
        [
            e.due_at.0.to_string(),
            when(e),
            e.binding.to_string(),
            e.account.clone(),
            format!("{} ({:?})", e.started_at.0, e.started_from),
            e.reason.clone(),
            r.last_attempt.clone().unwrap_or_default(),
        ]
    };
    match format {
        ExpiringFormat::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
        ExpiringFormat::Csv => {
            let mut out = String::from("dueAt,when,binding,account,started,endedBy,lastAttempt\r\n");
            for r in rows {
                out.push_str(&row(r).iter().map(|f| crate::evidence::csv::field(f)).collect::<Vec<_>>().join(","));
                out.push_str("\r\n");
            }
            out
        }
        ExpiringFormat::Table => {
            let header = ["DUE", "WHEN", "BINDING", "SUBJECT", "STARTED", "ENDED BY", "LAST ATTEMPT"].map(String::from);
            let rows: Vec<[String; 7]> = std::iter::once(header).chain(rows.iter().map(row)).collect();
            let widths: Vec<usize> =
                (0..7).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
            let mut out = String::new();
            for r in &rows {
                let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                out.push_str(cells.join("   ").trim_end());
                out.push('\n');
            }
            out
        }
    }
}

/// Seconds as the largest whole unit or two: `6d 23h`, `3h 5m`, `42s`.
fn human(s: i64) -> String {
    match s {
        86_400.. => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        3600.. => format!("{}h {}m", s / 3600, s % 3600 / 60),
        60.. => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
