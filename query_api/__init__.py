"""The query API process: HTTP routes (:mod:`query_api.routes`) and Arrow Flight over the
query engine (:mod:`query_api.engine`: Parquet files pruned by time plus buffer snapshots,
deduplicated, queried with DataFusion), InfluxQL (:mod:`query_api.influxql`), result formats and
the write router. Stateless; it shares libraries with the worker but never imports
:mod:`agents`."""
