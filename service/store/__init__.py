"""What the service keeps on disk, in its state folder: the model registry (`registry`), the SQLite ledger and asset
cache (`state`), the pool's scratch folder (`spill`) and the polling worker's heartbeat (`heartbeat`)."""
