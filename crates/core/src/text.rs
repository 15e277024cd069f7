//! Small text helpers every message goes through: clipping and "first N and M more" lists.

/// Longest message shown in Lumos, in `kubectl get dpr`, in a condition or an Event.
pub const MAX_MESSAGE: usize = 480;

/// Cuts `s` to at most `max` characters on a character boundary, ending in `…` when cut.
pub fn clip_to(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cuts `s` to at most `max` bytes (for what is stored, where size counts) on a character
/// boundary, ending in `…` when cut.
pub fn clip_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let room = max.saturating_sub('…'.len_utf8());
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if i + c.len_utf8() > room {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}…", &s[..end])
}

/// Cuts a message to [`MAX_MESSAGE`] characters.
pub fn clip(s: impl AsRef<str>) -> String {
    clip_to(s.as_ref(), MAX_MESSAGE)
}

/// Cuts `s` so that `s + suffix` fits [`MAX_MESSAGE`]; the suffix always survives.
pub fn clip_keeping(s: &str, suffix: &str) -> String {
    let room = MAX_MESSAGE.saturating_sub(suffix.chars().count());
    format!("{}{suffix}", clip_to(s, room))
}

/// How many items a list in a message shows before "and N more".
pub const SHOWN: usize = 3;

/// `a; b; c; and 4 more`: the first [`SHOWN`] items, then how many were left out.
pub fn first_and_more<I, T>(items: I) -> String
where
    I: IntoIterator<Item = T>,
    T: std::fmt::Display,
{
    let mut parts = Vec::new();
    let mut more = 0;
    for item in items {
        if parts.len() < SHOWN {
            parts.push(item.to_string());
        } else {
            more += 1;
        }
    }
    if more > 0 {
        parts.push(format!("and {more} more"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests;

/// An instant as reports write it: RFC 3339 in UTC, to the second.
pub fn rfc3339(t: k8s_openapi::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
