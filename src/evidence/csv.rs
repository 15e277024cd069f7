//! The CSV report (RFC 4180): a header, then one line per [`Row`].

use super::row::Row;

/// The header, in column order.
pub const HEADER: [&str; 20] = [
    "request",
    "person",
    "app",
    "permissions",
    "calledAt",
    "completedAt",
    "phase",
    "action",
    "kind",
    "object",
    "role",
    "subject",
    "outcome",
    "message",
    "subjectsBefore",
    "subjectsAfter",
    "verification",
    "accessStarted",
    "endedBy",
    "lastActivity",
];

/// The rows as CSV, lines ending in CRLF. Subject lists are `; `-joined; a list not recorded is
/// empty, an empty list (a deleted binding) is `(none)`.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    line(&mut out, HEADER.iter().map(|h| h.to_string()));
    for r in rows {
        let list = |l: &Option<Vec<String>>| match l {
            None => String::new(),
            Some(v) if v.is_empty() => "(none)".into(),
            Some(v) => v.join("; "),
        };
        line(
            &mut out,
            [
                r.request.clone(),
                r.person.clone(),
                r.app.clone(),
                r.permissions.clone(),
                r.called_at.clone(),
                r.completed_at.clone(),
                r.phase.clone(),
                r.action.map(|a| a.to_string()).unwrap_or_default(),
                r.kind.clone(),
                r.object.clone(),
                r.role.clone(),
                r.subject.clone(),
                r.outcome.clone(),
                r.message.clone(),
                list(&r.subjects_before),
                list(&r.subjects_after),
                r.verification.clone(),
                r.access_started.clone(),
                r.ended_by.clone(),
                r.last_activity.clone(),
            ],
        );
    }
    out
}

fn line(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(&f));
    }
    out.push_str("\r\n");
}

/// One field: quoted when it holds a comma, quote, line break or edge space (quotes doubled).
/// A field a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR)
/// gets a leading `'`, so a name like `=HYPERLINK(…)` stays text.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    let needs_quotes = s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ');
    if needs_quotes { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}
