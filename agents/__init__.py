"""The worker: one Faust application (``app``) and its agents over co-partitioned topics —
ingest (writes -> buffers + accepted batches, rejected lines), persist (buffers -> Parquet; the
thresholds are :mod:`persist.policy`), subscriptions and triggers (their own consumer groups,
run under a supervisor). The only package that runs Faust agents; the query API never imports it.
"""
