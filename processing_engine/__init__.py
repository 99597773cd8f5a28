"""The processing engine: InfluxDB 3's plugin API (``process_writes``,
``process_scheduled_call``, ``process_request``, plus influent's ``process_persist``) for
plugins written for InfluxDB 3. Free of Faust, so the query API can run request triggers too.
See docs/plugins.md."""
