"""The worker's state: the changelog-backed Faust table of per-partition write buffers."""
