"""A synthetic store: a catalogue and customers drawn from personas with known
behaviour, whose traffic goes through the real intake (live and history modes) or
straight into PostgreSQL (bulk mode, for benchmarks), with the ground truth kept
beside it for scoring segments, experiments and recommendations."""
