//! Reads the ledger's shards back from their ConfigMaps (issue 26, part `lumos`: not written yet).
