//! `deprovisioner inactive --for 30d`: the users and ServiceAccounts that hold bindings but made
//! no request to the API server within the window, with their bindings and what the activity
//! store says. Accounts the store cannot prove inactive (its stream of audit batches did not
//! cover the whole window, or stopped; recording began inside the window, or never for their
//! shard) are listed apart with the reason, never as inactive. `--all` adds the active ones.
//!
//! The rows are `deprovisioner-core`'s [`inactive::rows`]; here the reads and the three formats.

use std::fmt::Write as _;

use anyhow::Context as _;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use serde_json::{Value, json};

use crate::activity::read::{Shards, Store};
use crate::activity::{Coverage, Inactivity, Known};
use crate::cli::{InactiveArgs, InactiveFormat};
use crate::plan::subject::Protected;
use deprovisioner_core::activity::inactive::{self, Row};
use deprovisioner_core::activity::known::rfc3339;

/// Bindings a table or CSV row names at most (the JSON names all, the count always).
const BINDINGS_SHOWN: usize = 5;

/// What a report covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// When it was made.
    pub generated_at: Timestamp,
    /// The window, as given (`30d`).
    pub window: String,
    /// Its start: no request since then means inactive.
    pub from: Timestamp,
    /// When the earliest shard began recording (none: nothing was ever recorded).
    pub recording_since: Option<Timestamp>,
    /// The stretch of time the store observed (none: no audit batch was ever stored).
    pub coverage: Option<Coverage>,
    /// Every account holding bindings.
    pub rows: Vec<Row>,
    /// Also show the active accounts.
    pub all: bool,
}

/// Reads the bindings and the activity store and prints the report.
pub async fn run(client: &Client, args: &InactiveArgs) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let window = SignedDuration::try_from(args.window).context("--for is too long")?;
    let from = now.checked_sub(window).context("--for reaches before the start of time")?;
    let protected =
        Protected { operator: Some(args.service_account.clone()), also: args.protect_service_account.clone() };
    let store = Store {
        client: client.clone(),
        namespace: args.activity.activity_namespace.clone(),
        prefix: args.activity.activity_prefix.clone(),
    };
    let (bindings, shards) = tokio::join!(crate::connector::read::bindings(client), store.all_covered());
    let bindings = bindings.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let shards: Shards = shards.context("reading the activity store")?;
    let grants = crate::connector::model::grants(&bindings.role_bindings, &bindings.cluster_role_bindings, &protected);
    let report = Report {
        generated_at: now,
        window: humantime::format_duration(args.window).to_string(),
        from,
        recording_since: shards.recording_since(),
        rows: inactive::rows(&grants, |a| shards.known(a), from, shards.coverage.as_ref(), now),
        coverage: shards.coverage.clone(),
        all: args.all,
    };
    let text = match args.format {
        InactiveFormat::Table => table(&report),
        InactiveFormat::Csv => csv(&report),
        InactiveFormat::Json => format!("{:#}\n", report.json()),
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

impl Report {
    /// The rows shown: inactive, then unproven, then (with `all`) active; by account id within.
    pub fn shown(&self) -> Vec<&Row> {
        let order = [Inactivity::Inactive, Inactivity::Unproven, Inactivity::Active];
        order
            .iter()
            .filter(|j| self.all || **j != Inactivity::Active)
            .flat_map(|j| self.rows.iter().filter(move |r| r.judged == *j))
            .collect()
    }

    /// The JSON report.
    pub fn json(&self) -> Value {
        json!({
            "generatedAt": rfc3339(self.generated_at),
            "window": self.window,
            "from": rfc3339(self.from),
            "recordingSince": self.recording_since.map(rfc3339),
            "coveredFrom": self.coverage.as_ref().map(|c| rfc3339(c.covered_from)),
            "heardAt": self.coverage.as_ref().map(|c| rfc3339(c.heard_at)),
            "accounts": self.shown().into_iter().map(row_json).collect::<Vec<_>>(),
        })
    }
}

fn row_json(r: &Row) -> Value {
    let mut v = json!({
        "account": r.account,
        "kind": r.kind,
        "status": r.judged.as_str(),
        "bindingCount": r.bindings.len(),
        "bindings": r.bindings,
    });
    if let Some(reason) = &r.reason {
        v["reason"] = json!(reason);
    }
    match &r.known {
        Known::Seen(e) => {
            v["lastActiveAt"] = json!(rfc3339(e.at));
            for (k, f) in [("what", &e.what), ("credential", &e.credential), ("impersonatedBy", &e.impersonated_by)] {
                if let Some(f) = f {
                    v[k] = json!(f);
                }
            }
        }
        Known::NotSeenSince(t) => v["notSeenSince"] = json!(rfc3339(*t)),
        Known::NotRecorded => v["recorded"] = json!(false),
    }
    v
}

fn bindings_text(r: &Row) -> String {
    let mut s = r.bindings.iter().take(BINDINGS_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if r.bindings.len() > BINDINGS_SHOWN {
        let _ = write!(s, " and {} more", r.bindings.len() - BINDINGS_SHOWN);
    }
    s
}

fn last_seen_text(k: &Known) -> String {
    match k {
        Known::Seen(e) => rfc3339(e.at),
        Known::NotSeenSince(t) => format!("not since {}", rfc3339(*t)),
        Known::NotRecorded => "not recorded".into(),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// `: STOPPED …` when batches no longer arrive.
fn stopped(c: &Coverage, now: Timestamp) -> String {
    match c.live_at(now) {
        true => String::new(),
        false => "; they have STOPPED arriving: nobody is proven inactive (is the audit webhook still sending?)".into(),
    }
}

/// The CSV report: `account,kind,status,lastSeen,what,credential,bindingCount,bindings`.
pub fn csv(report: &Report) -> String {
    let mut out = String::from("account,kind,status,lastSeen,what,credential,bindingCount,bindings\r\n");
    for r in report.shown() {
        let (what, credential) = match &r.known {
            Known::Seen(e) => (e.what.clone().unwrap_or_default(), e.credential.clone().unwrap_or_default()),
            _ => (String::new(), String::new()),
        };
        let fields = [
            r.account.clone(),
            r.kind.to_string(),
            r.judged.as_str().to_string(),
            last_seen_text(&r.known),
            what,
            credential,
            r.bindings.len().to_string(),
            r.bindings.join("; "),
        ];
        out.push_str(&fields.iter().map(|f| crate::evidence::csv::field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The table: one section per judgement, aligned columns.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Accounts holding bindings with no request to the API server for {} (since {}).",
        report.window,
        rfc3339(report.from)
    );
    match report.recording_since {
        Some(t) => {
            let _ = writeln!(out, "Activity recorded since {}.", rfc3339(t));
            let coverage = report.coverage.as_ref().map_or_else(
                || "No audit batch was ever stored: nothing can be proven inactive.".to_string(),
                |c| format!("{}{}.", capitalized(&c.describe()), stopped(c, report.generated_at)),
            );
            let _ = writeln!(out, "{coverage}");
        }
        None => {
            let _ = writeln!(
                out,
                "No activity was ever recorded: nothing can be proven inactive (is the audit webhook on?)."
            );
        }
    }
    let sections = [
        (Inactivity::Inactive, "Inactive (recording covered the whole window)"),
        (Inactivity::Unproven, "Not proven inactive (the store cannot prove it: why under each)"),
        (Inactivity::Active, "Active within the window"),
    ];
    let shown = report.shown();
    for (judged, title) in sections {
        if judged == Inactivity::Active && !report.all {
            continue;
        }
        let rows: Vec<&&Row> = shown.iter().filter(|r| r.judged == judged).collect();
        let _ = writeln!(out, "\n{title}: {}", rows.len());
        if rows.is_empty() {
            continue;
        }
        let cells: Vec<[String; 3]> =
            rows.iter().map(|r| [r.account.clone(), last_seen_text(&r.known), bindings_text(r)]).collect();
        let header = ["ACCOUNT".to_string(), "LAST SEEN".to_string(), "BINDINGS".to_string()];
        let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0);
        let (w0, w1) = (width(0), width(1));
        let _ = writeln!(out, "{:w0$}  {:w1$}  {}", header[0], header[1], header[2]);
        for (c, r) in cells.iter().zip(&rows) {
            let _ = writeln!(out, "{:w0$}  {:w1$}  {}", c[0], c[1], c[2]);
            if let Some(reason) = &r.reason {
                let _ = writeln!(out, "  why: {reason}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
