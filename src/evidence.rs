//! `deprovisioner evidence`: what auditors ask for, from the records. For a time range (and
//! optionally one app or one person) it writes one row per action as CSV or JSON, and a
//! self-contained HTML report with a summary, each request's actions with the binding's
//! subjects before and after, and each request's verification verdict.
//!
//! `row` (which requests, what they say), `csv`, `html` and `time` are pure; `list` reads the
//! records from the API server; [`write`] puts them together.

pub mod csv;
pub mod html;
pub mod list;
pub mod row;
pub mod time;

use std::path::Path;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use serde::Serialize;

use crate::cli::{EvidenceArgs, EvidenceFormat};
use row::{Filter, RequestEvidence, Row};

/// What a report covers and says.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// When it was made.
    pub generated_at: Timestamp,
    /// The API server the records were read from.
    pub cluster: String,
    /// Which requests it covers.
    pub filter: Filter,
    /// Those requests, oldest call first.
    pub requests: Vec<RequestEvidence>,
}

/// The JSON report: what it covers, then the rows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    generated_at: String,
    cluster: &'a str,
    since: Option<String>,
    until: Option<String>,
    app: Option<&'a str>,
    person: Option<&'a str>,
    rows: Vec<Row>,
}

impl Report {
    /// Every row: one per action of each request (one for a request with no results).
    pub fn rows(&self) -> Vec<Row> {
        self.requests.iter().flat_map(RequestEvidence::rows).collect()
    }

    /// The report in one format.
    pub fn render(&self, format: EvidenceFormat) -> Result<String, serde_json::Error> {
        Ok(match format {
            EvidenceFormat::Csv => csv::render(&self.rows()),
            EvidenceFormat::Html => html::render(self),
            EvidenceFormat::Json => {
                let j = JsonReport {
                    generated_at: time::rfc3339(self.generated_at),
                    cluster: &self.cluster,
                    since: self.filter.since.map(time::rfc3339),
                    until: self.filter.until.map(time::rfc3339),
                    app: self.filter.app.as_deref(),
                    person: self.filter.person.as_deref(),
                    rows: self.rows(),
                };
                let mut s = serde_json::to_string_pretty(&j)?;
                s.push('\n');
                s
            }
        })
    }
}

/// The filter the flags ask for, times resolved against `now`.
pub fn filter(args: &EvidenceArgs, now: Timestamp) -> anyhow::Result<Filter> {
    let resolve = |w: Option<time::When>, flag: &str| {
        w.map(|w| w.resolve(now)).transpose().map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let f = Filter {
        since: resolve(args.since, "since")?,
        until: resolve(args.until, "until")?,
        app: args.app.clone(),
        person: args.person.clone(),
    };
    if let (Some(s), Some(u)) = (f.since, f.until)
        && s >= u
    {
        anyhow::bail!("--since ({}) must be before --until ({})", time::rfc3339(s), time::rfc3339(u));
    }
    Ok(f)
}

/// Reads the records and writes the report(s) the flags ask for.
pub async fn write(client: &Client, cluster: String, args: &EvidenceArgs) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let filter = filter(args, now)?;
    let mut all = list::requests(client).await.context("listing DeprovisionRequests")?;
    // On a fleet hub, every member's record too (as each agent reported it).
    match list::member_records(client).await {
        Ok(members) => all.extend(members),
        Err(e) => eprintln!("members' records not included: listing MemberRequests: {e}"),
    }
    let report = Report { generated_at: now, cluster, requests: row::select(&all, &filter), filter };
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (format, file) in [
            (EvidenceFormat::Csv, "evidence.csv"),
            (EvidenceFormat::Json, "evidence.json"),
            (EvidenceFormat::Html, "evidence.html"),
        ] {
            write_file(&dir.join(file), &report.render(format)?)?;
        }
        eprintln!("wrote {} request(s) to {}", report.requests.len(), dir.display());
        return Ok(());
    }
    let text = report.render(args.format)?;
    match &args.output {
        Some(path) => write_file(path, &text),
        None => to_stdout(std::io::stdout().lock(), &text),
    }
}

/// Writes the report to standard output. A reader that stopped reading (`evidence | head`) ends
/// the command quietly, as it ends `cat`: the rest is not wanted, which is no error.
fn to_stdout(mut out: impl std::io::Write, text: &str) -> anyhow::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
