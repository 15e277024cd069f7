//! What the endpoint answers Lumos: `SUCCESS` or `FAILURE` and a short message fit to show the
//! requester, always naming the record.

use serde::Serialize;

use crate::crd::{DeprovisionRequestStatus, Phase};
use crate::text;

/// The answer's verdict, spelled as Lumos expects it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Verdict {
    /// The access is gone (or a dry run planned it).
    #[serde(rename = "SUCCESS")]
    Success,
    /// Anything else: Lumos shows the message.
    #[serde(rename = "FAILURE")]
    Failure,
}

impl Verdict {
    /// `SUCCESS` or `FAILURE` (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Failure => "FAILURE",
        }
    }
}

/// What the webhook answers (HTTP 200, or a 4xx for a refused call, with this JSON body).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LumosAnswer {
    /// `SUCCESS` or `FAILURE`.
    pub response: Verdict,
    /// Shown to the requester in Lumos.
    pub msg: String,
}

impl LumosAnswer {
    /// A success.
    pub fn success(msg: impl AsRef<str>) -> Self {
        LumosAnswer { response: Verdict::Success, msg: text::clip(msg) }
    }

    /// A failure.
    pub fn failure(msg: impl AsRef<str>) -> Self {
        LumosAnswer { response: Verdict::Failure, msg: text::clip(msg) }
    }

    /// The answer for a record in its current state. The record's name always survives
    /// clipping: it is how a person finds the details.
    pub fn for_record(name: &str, status: Option<&DeprovisionRequestStatus>) -> Self {
        let phase = status.map(|s| s.phase).unwrap_or_default();
        let record = format!(" (record: deprovisionrequest/{name})");
        let msg = status.and_then(|s| s.message.as_deref()).unwrap_or_default();
        let msg = text::clip_keeping(msg, &record);
        match phase {
            Phase::Succeeded | Phase::DryRun => LumosAnswer::success(msg),
            Phase::Failed => LumosAnswer::failure(msg),
            // A fleet hub's record names each member's answer so far (who has not answered).
            Phase::Pending | Phase::InProgress if status.is_some_and(|s| !s.members.is_empty()) => {
                let said = status.and_then(|s| s.message.as_deref()).unwrap_or_default();
                LumosAnswer::failure(text::clip_keeping(
                    &format!("Not every cluster answered in time, the hub keeps waiting for them: {said}"),
                    &record,
                ))
            }
            Phase::Pending | Phase::InProgress => LumosAnswer::failure(format!(
                "Still in progress: the operator will finish it; see deprovisionrequest/{name} for the result"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
