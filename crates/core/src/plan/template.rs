//! `{{field}}` templates over a request, used for subject names and namespaces.
//!
//! Known fields: `target_user.email`, `target_user.email_local` (before the `@`),
//! `target_user.given_name`, `target_user.family_name`, the same under `user.`,
//! `custom_fields.<name>`, `application.app_id`, `application.instance_id`.

use crate::crd::{DeprovisionRequestSpec, Person};

/// A template that cannot be parsed or rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{` without `}}`, or an empty field.
    #[error("template {0:?} is malformed: every `{{{{` needs a closing `}}}}` around a field name")]
    Malformed(String),
    /// A field this operator does not know.
    #[error("template {template:?} uses unknown field {field:?}")]
    UnknownField {
        /// The template.
        template: String,
        /// The field.
        field: String,
    },
    /// A known field the payload does not carry.
    #[error("template {template:?} needs {field}, which the request does not carry")]
    Missing {
        /// The template.
        template: String,
        /// The field.
        field: String,
    },
    /// A value a URL path reads as a step (`.` or `..`, even percent-encoded), not as a name.
    #[error("template {template:?}: {field} is {value:?}, which a URL path reads as a step, not a name")]
    DotSegment {
        /// The template.
        template: String,
        /// The field.
        field: String,
        /// The value.
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Field(&'a str),
}

fn parse(template: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Malformed(template.into()))?;
        let field = after[..end].trim();
        if field.is_empty() {
            return Err(TemplateError::Malformed(template.into()));
        }
        parts.push(Part::Field(field));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(TemplateError::Malformed(template.into()));
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

fn known(field: &str) -> bool {
    let person = |f: &str| matches!(f, "email" | "email_local" | "given_name" | "family_name");
    match field.split_once('.') {
        Some(("target_user" | "user", f)) => person(f),
        Some(("custom_fields", f)) => !f.is_empty(),
        Some(("application", f)) => matches!(f, "app_id" | "instance_id"),
        _ => false,
    }
}

/// Checks a template without a request: syntax and field names.
pub fn validate(template: &str) -> Result<(), TemplateError> {
    for part in parse(template)? {
        if let Part::Field(f) = part
            && !known(f)
        {
            return Err(TemplateError::UnknownField { template: template.into(), field: f.into() });
        }
    }
    Ok(())
}

/// Whether a template uses fields the requester can type in Lumos (`custom_fields.*`, `user.*`),
/// as opposed to what Lumos itself knows (the target user's identity, the application).
pub fn uses_requester_fields(template: &str) -> bool {
    parse(template).is_ok_and(|parts| {
        parts.iter().any(|p| matches!(p, Part::Field(f) if f.starts_with("custom_fields.") || f.starts_with("user.")))
    })
}

fn person_field(p: &Person, f: &str) -> Option<String> {
    match f {
        "email" => Some(p.email.clone()),
        "email_local" => p.email.split('@').next().map(str::to_string),
        "given_name" => p.given_name.clone(),
        "family_name" => p.family_name.clone(),
        _ => None,
    }
}

fn lookup(spec: &DeprovisionRequestSpec, field: &str) -> Option<String> {
    match field.split_once('.')? {
        ("target_user", f) => person_field(&spec.target_user, f),
        ("user", f) => spec.user.as_ref().and_then(|u| person_field(u, f)),
        ("custom_fields", f) => spec.custom_fields.get(f).cloned(),
        ("application", "app_id") => spec.application.app_id.clone(),
        ("application", "instance_id") => spec.application.instance_id.clone(),
        _ => None,
    }
    .filter(|v| !v.trim().is_empty())
}

/// Renders a template over a request. A missing or empty field is an error, never "".
pub fn render(template: &str, spec: &DeprovisionRequestSpec) -> Result<String, TemplateError> {
    render_escaped(template, spec, |v| v.to_string())
}

/// Renders a template, passing each inserted value through `escape` (literal text is kept).
pub fn render_escaped(
    template: &str,
    spec: &DeprovisionRequestSpec,
    escape: impl Fn(&str) -> String,
) -> Result<String, TemplateError> {
    validate(template)?;
    let mut out = String::new();
    for part in parse(template)? {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Field(f) => {
                let value = lookup(spec, f)
                    .ok_or_else(|| TemplateError::Missing { template: template.into(), field: f.into() })?;
                out.push_str(&escape(&value));
            }
        }
    }
    Ok(out)
}

/// Renders a URL template, values percent-encoded ([`url_escape`]). A value that is `.` or `..`
/// is refused: URL parsers read `%2E` and `%2E%2E` as dot segments, so it would change the path.
pub fn render_url(template: &str, spec: &DeprovisionRequestSpec) -> Result<String, TemplateError> {
    for part in parse(template)? {
        if let Part::Field(f) = part
            && let Some(value) = lookup(spec, f).filter(|v| v == "." || v == "..")
        {
            return Err(TemplateError::DotSegment { template: template.into(), field: f.into(), value });
        }
    }
    render_escaped(template, spec, url_escape)
}

/// Escapes a value for the inside of a JSON string (no surrounding quotes).
pub fn json_escape(v: &str) -> String {
    let quoted = serde_json::Value::String(v.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Percent-encodes a value for a URL path segment or query value.
pub fn url_escape(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An RFC 7644 filter comparing `attribute` with `value` (a JSON string literal, escaped).
pub fn scim_filter(attribute: &str, value: &str) -> String {
    format!("{attribute} eq {}", serde_json::Value::String(value.to_string()))
}

#[cfg(test)]
mod tests;
