//! Writes the ledger's shards to ConfigMaps (issue 26, part `ingest`: not written yet).
