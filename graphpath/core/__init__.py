"""What every part of graphpath stands on: the learned transformer (`model`), run configuration
(`config`) and checksummed checkpoints (`checkpoint`)."""
