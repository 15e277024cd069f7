//! The trace id that ties one Lumos call's work together across replicas: the webhook takes it
//! from the caller's W3C `traceparent` header (or makes one), stores it on the record as the
//! [`ANNOTATION`] when it creates it, and every reconcile of that record carries it as its span's
//! `trace_id` field, so a JSON log line of either side can be found by it.

use crate::crd::DeprovisionRequest;

/// The record's annotation holding its trace id: set when the record is created, never changed.
pub const ANNOTATION: &str = "deprovisioner.dev/trace-id";

/// The W3C Trace Context header a caller may send.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// The trace id of the call this task serves (see [`scope`]).
    static CURRENT: String;
}

/// The trace id (32 lowercase hex digits) of a W3C `traceparent` header
/// (`version-traceid-parentid-flags`), or `None` when it is not a valid one: wrong lengths,
/// upper-case or non-hex digits, version `ff`, an all-zero trace or parent id, or (version `00`)
/// anything after the flags. A later version may append fields after the flags.
pub fn from_traceparent(header: &str) -> Option<String> {
    let header = header.trim();
    let mut fields = header.splitn(5, '-');
    let (version, trace_id, parent_id, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let rest = fields.next();
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && !zero(trace_id)
        && hex(parent_id, 16)
        && !zero(parent_id)
        && hex(flags, 2)
        && match rest {
            None => true,
            // Version 00 has exactly four fields; a later one may add more after a dash.
            Some(_) if version == "00" => false,
            Some(_) => true,
        };
    valid.then(|| trace_id.to_string())
}

/// A new random trace id: 16 random bytes, as 32 hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() || bytes == [0; 16] {
        // No system randomness (it does not happen on Linux): the clock and a counter still give
        // an id that no other call of this process shares.
        use sha2::Digest as _;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let digest = sha2::Sha256::digest(format!("{}-{}-{n}", t.as_nanos(), std::process::id()));
        bytes.copy_from_slice(&digest[..16]);
    }
    hex::encode(bytes)
}

/// The trace id of a call: its caller's `traceparent` when valid, else a new one.
pub fn of_call(traceparent: Option<&str>) -> String {
    traceparent.and_then(from_traceparent).unwrap_or_else(new_id)
}

/// Whether `id` is a trace id as this module writes them (32 lowercase hex digits, not all zero).
pub fn is_valid(id: &str) -> bool {
    id.len() == 32
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

/// The trace id of a record: its [`ANNOTATION`] when it holds a valid one; else (a record
/// created without one, e.g. by kubectl) derived from its UID (a UUID is 16 bytes, as a trace id),
/// so every replica finds the same one.
pub fn of_request(obj: &DeprovisionRequest) -> String {
    let annotated = obj.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION)).filter(|id| is_valid(id));
    match annotated {
        Some(id) => id.clone(),
        None => of_uid(obj.metadata.uid.as_deref().unwrap_or_default()),
    }
}

/// The trace id derived from a UID: its hex digits (a UUID's 32), lower-cased; another form of
/// UID is hashed to 16 bytes. Empty for no UID.
pub fn of_uid(uid: &str) -> String {
    let digits: String = uid.chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase();
    if is_valid(&digits) {
        return digits;
    }
    if uid.is_empty() {
        return String::new();
    }
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(uid.as_bytes())[..16])
}

/// Runs `fut` as the work of the call with trace id `id`: [`current`] tells it there.
pub async fn scope<F: Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// The trace id of the call this task serves (see [`scope`]), or a new one when it serves none
/// (e.g. the connector's CLI recording a request).
pub fn current() -> String {
    CURRENT.try_with(Clone::clone).unwrap_or_else(|_| new_id())
}

#[cfg(test)]
mod tests;
