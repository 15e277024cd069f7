//! The HTML report: one self-contained page (inline CSS; no scripts, fonts or images) with a
//! summary and each request's actions. Every piece of recorded text is escaped.

use std::fmt::Write as _;

use super::Report;
use super::row::{OUTCOMES, RequestEvidence, Totals, Verdict};
use super::time::human;
use crate::crd::{ActionResult, Outcome};

/// Text made safe inside HTML elements and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --warn: #9a6700; --warn-bg: #fff8c5;
  --info: #0969da; --info-bg: #ddf4ff; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
  margin: 0 auto; padding: 28px 32px 48px; max-width: 1240px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.meta { color: var(--muted); margin: 0; }
.meta b { color: var(--ink); font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-weight: 600; font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.summary table { width: auto; min-width: 280px; }
.request { border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; overflow: hidden; break-inside: avoid; }
.request > header { display: flex; justify-content: space-between; align-items: center; gap: 12px;
  padding: 10px 14px; background: var(--soft); border-bottom: 1px solid var(--line); }
.request > header > span { text-align: right; }
.request > header .badge { white-space: normal; }
.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 4px 16px; padding: 10px 14px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.actions td { font-size: 13px; overflow-wrap: anywhere; padding: 6px 6px; }
.actions { table-layout: fixed; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 11.5px; }
ul.subjects { list-style: none; margin: 0; padding: 0; }
ul.subjects li.gone { color: var(--bad); text-decoration: line-through; }
.none { color: var(--muted); font-style: italic; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.ok { color: var(--ok); background: var(--ok-bg); }
.bad { color: var(--bad); background: var(--bad-bg); }
.warn { color: var(--warn); background: var(--warn-bg); }
.info { color: var(--info); background: var(--info-bg); }
.empty { color: var(--muted); padding: 10px 14px; margin: 0; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@media print { body { padding: 0; max-width: none; } .request { break-inside: avoid; } }
"#;

/// The report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let title = "Access removal evidence";
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(h, "<p class=\"meta\">{}</p>", scope_line(report));
    let _ = writeln!(
        h,
        "<p class=\"meta\">Generated <b>{}</b> by deprovisioner {} from the DeprovisionRequest records of <b>{}</b>.</p>\n</header>",
        escape(&human(report.generated_at)),
        escape(env!("CARGO_PKG_VERSION")),
        escape(&report.cluster),
    );
    summary(&mut h, &Totals::of(&report.requests));
    let _ = writeln!(h, "<h2>Requests</h2>");
    if report.requests.is_empty() {
        let _ = writeln!(h, "<p class=\"empty\">No request matches.</p>");
    }
    for r in &report.requests {
        request(&mut h, r);
    }
    let _ = writeln!(
        h,
        "<footer>Each request is the operator's record of one Lumos call: the plan was recorded before anything changed, and each action's result when it finished. “Subjects before/after” are the binding's subjects as read just before the change and as written; struck-through names are those removed.</footer>\n</body>\n</html>"
    );
    h
}

fn scope_line(report: &Report) -> String {
    let f = &report.filter;
    let range = match (f.since, f.until) {
        (Some(s), Some(u)) => format!("from <b>{}</b> to <b>{}</b>", escape(&human(s)), escape(&human(u))),
        (Some(s), None) => format!("since <b>{}</b>", escape(&human(s))),
        (None, Some(u)) => format!("before <b>{}</b>", escape(&human(u))),
        (None, None) => "<b>all time</b>".into(),
    };
    let mut line = format!("Lumos calls {range}");
    if let Some(app) = &f.app {
        let _ = write!(line, " · app <b>{}</b>", escape(app));
    }
    if let Some(p) = &f.person {
        let _ = write!(line, " · person <b>{}</b>", escape(p));
    }
    line
}

fn summary(h: &mut String, t: &Totals) {
    let _ = writeln!(h, "<h2>Summary</h2>\n<div class=\"summary\">");
    let _ = writeln!(h, "<table><thead><tr><th>Outcome</th><th class=\"num\">Actions</th></tr></thead><tbody>");
    for (o, n) in OUTCOMES.iter().zip(t.by_outcome) {
        let _ = writeln!(h, "<tr><td>{}</td><td class=\"num\">{n}</td></tr>", outcome_badge(*o));
    }
    let _ = writeln!(h, "<tr><th>Total</th><th class=\"num\">{}</th></tr></tbody></table>", t.actions);
    let _ = writeln!(h, "<table><thead><tr><th>Verification</th><th class=\"num\">Requests</th></tr></thead><tbody>");
    for (badge, n) in [
        (verdict_badge(&Verdict::Verified), t.verified),
        ("<span class=\"badge bad\">verification failed</span>".to_string(), t.verification_failed),
        (verdict_badge(&Verdict::NotVerified), t.not_verified),
    ] {
        let _ = writeln!(h, "<tr><td>{badge}</td><td class=\"num\">{n}</td></tr>");
    }
    let _ = writeln!(h, "<tr><th>Total</th><th class=\"num\">{}</th></tr></tbody></table>\n</div>", t.requests);
}

fn outcome_badge(o: Outcome) -> String {
    let class = match o {
        Outcome::Removed | Outcome::Deleted | Outcome::Deactivated => "ok",
        Outcome::AlreadyAbsent => "info",
        Outcome::Failed => "bad",
    };
    format!("<span class=\"badge {class}\">{}</span>", o.as_str())
}

fn verdict_badge(v: &Verdict) -> String {
    let class = match v {
        Verdict::Verified => "ok",
        Verdict::Failed(_) => "bad",
        Verdict::NotVerified => "warn",
    };
    format!("<span class=\"badge {class}\">{}</span>", escape(v.text()))
}

fn request(h: &mut String, r: &RequestEvidence) {
    let phase_class = match r.phase.as_str() {
        "Succeeded" => "ok",
        "Failed" => "bad",
        _ => "warn",
    };
    let _ = writeln!(
        h,
        "<section class=\"request\">\n<header><h3>{}</h3><span><span class=\"badge {phase_class}\">{}</span> {}</span></header>",
        escape(&r.name),
        r.phase.as_str(),
        verdict_badge(&r.verdict),
    );
    let person = match &r.person_name {
        Some(n) => format!("{} &lt;{}&gt;", escape(n), escape(&r.person)),
        None => escape(&r.person),
    };
    let time = |t: Option<k8s_openapi::jiff::Timestamp>| t.map_or("—".to_string(), |t| escape(&human(t)));
    let perms = if r.permissions.is_empty() {
        "<span class=\"none\">the whole application</span>".to_string()
    } else {
        escape(&r.permissions)
    };
    // An expiry was recorded by the operator, not called by Lumos; it says when the access began
    // and what ended it.
    let expiry = !r.access_started.is_empty() || !r.ended_by.is_empty();
    let (called, expiry_facts) = match expiry {
        true => {
            let or_dash = |s: &str| if s.is_empty() { "—".to_string() } else { escape(s) };
            let facts = format!(
                "\n<dt>Access started</dt><dd>{}</dd><dt>Ended by</dt><dd>{}</dd>",
                or_dash(&r.access_started),
                or_dash(&r.ended_by)
            );
            ("Expiry recorded", facts)
        }
        false => ("Lumos call", String::new()),
    };
    let _ = writeln!(
        h,
        "<dl class=\"facts\"><dt>Person</dt><dd>{person}</dd><dt>{called}</dt><dd>{}</dd>\n<dt>App</dt><dd>{}</dd><dt>Completed</dt><dd>{}</dd>\n<dt>Permissions</dt><dd>{perms}</dd><dt>Message</dt><dd>{}</dd>{expiry_facts}</dl>",
        time(r.called_at),
        escape(&r.app),
        time(r.completed_at),
        escape(&r.message),
    );
    if let Some(a) = &r.last_activity {
        let _ = writeln!(h, "<dl class=\"facts\"><dt>Last activity</dt><dd>{}</dd></dl>", last_activity(a));
    }
    if r.actions.is_empty() {
        let _ = writeln!(h, "<p class=\"empty\">No action was recorded for this request.</p>\n</section>");
        return;
    }
    let _ = writeln!(
        h,
        "<table class=\"actions\"><colgroup><col style=\"width:3%\"><col style=\"width:14%\"><col style=\"width:12%\"><col style=\"width:13%\"><col style=\"width:10%\"><col style=\"width:18%\"><col style=\"width:16%\"><col style=\"width:14%\"></colgroup>\n<thead><tr><th class=\"num\">#</th><th>Object</th><th>Role</th><th>Subject</th><th>Outcome</th><th>Subjects before</th><th>Subjects after</th><th>Details</th></tr></thead><tbody>"
    );
    for (res, role) in &r.actions {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            res.id,
            escape(&res.object),
            role.as_deref().map_or_else(|| "—".to_string(), escape),
            escape(&res.subject),
            outcome_badge(res.outcome),
            subjects(res.subjects_before.as_deref(), complete(res.subjects_after.as_deref()), res, true),
            subjects(res.subjects_after.as_deref(), None, res, false),
            escape(&res.message),
        );
    }
    let _ = writeln!(h, "</tbody></table>\n</section>");
}

/// A list that is not clipped (a clipped one cannot say which names are gone).
fn complete(list: Option<&[String]>) -> Option<&[String]> {
    list.filter(|l| !l.last().is_some_and(|n| n.starts_with("… and ")))
}

/// A subject list; names of `list` missing from `kept` (those removed) are struck through.
fn subjects(list: Option<&[String]>, kept: Option<&[String]>, res: &ActionResult, before: bool) -> String {
    let Some(list) = list else {
        return "<span class=\"none\">not recorded</span>".into();
    };
    if list.is_empty() {
        let why = match (before, res.outcome) {
            (false, Outcome::Deleted) => "none: binding deleted",
            (true, _) | (false, Outcome::AlreadyAbsent) if res.subjects_before.as_ref().is_some_and(Vec::is_empty) => {
                "none: binding absent"
            }
            _ => "none",
        };
        return format!("<span class=\"none\">{why}</span>");
    }
    let mut out = String::from("<ul class=\"subjects mono\">");
    for n in list {
        let gone = kept.is_some_and(|k| !k.contains(n));
        let class = if gone { " class=\"gone\"" } else { "" };
        let _ = write!(out, "<li{class}>{}</li>", escape(n));
    }
    out.push_str("</ul>");
    out
}

/// The target's last activity as recorded when the request was planned: one line per account.
fn last_activity(a: &crate::crd::RecordedActivity) -> String {
    if let Some(e) = &a.error {
        return format!("<span class=\"badge warn\">not read</span> {}", escape(e));
    }
    if a.accounts.is_empty() {
        return "<span class=\"none\">no user or ServiceAccount to look up</span>".into();
    }
    let items: Vec<String> = a
        .accounts
        .iter()
        .map(|x| {
            format!("<li><span class=\"mono\">{}</span>: {}</li>", escape(&x.account), escape(&x.known().describe()))
        })
        .collect();
    format!("<ul class=\"subjects\">{}</ul>", items.concat())
}
