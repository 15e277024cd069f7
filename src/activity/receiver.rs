//! The audit endpoint (issue 26, part `ingest`: not written yet).
