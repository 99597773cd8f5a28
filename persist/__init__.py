"""Durable storage and its metadata: the object stores (local, S3), Parquet files, the catalog in
Redis (databases, tables, columns, files, snapshots, watermarks), the processing engine's part
of the catalog, partition keys, query-time dedup, catalog rebuild, and the persist policy
(:mod:`persist.policy`: when a buffer becomes a file)."""
