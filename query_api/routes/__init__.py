"""The query API's HTTP routes, one module per concern, each a class that is handed its
collaborators (settings, metrics) and builds its ``APIRouter``:

- ``query``     — SQL and InfluxQL: ``/api/v3/query_sql``, ``/api/v3/query_influxql``, v1 ``/query``;
- ``write``     — the write router: ``/api/v3/write_lp``, v1 ``/write``, v2 ``/api/v2/write``;
- ``configure`` — databases and tables: ``/api/v3/configure/database`` and ``/table``;
- ``engine``    — subscriptions, processing-engine triggers, ``/api/v3/engine/<path>``;
- ``flight``    — Arrow Flight ``DoGet`` (its own gRPC server, the same queries as ``query``)
  and Flight SQL (:mod:`query_api.flight_sql`);
- ``tokens``    — ``/api/v3/configure/token*`` and the authorization step of every request;
- ``plugins``   — plugin uploads and dry runs: ``/api/v3/plugins/files``, ``/api/v3/plugin_test/*``;
- ``compat``    — ``/ready`` and the table list;
- ``explorer``  — the browser page (``/``, ``/explorer/``) and ``/api/v3/explorer/pipeline``.

Per-process objects made at start-up (catalog, query engine, Kafka producer) are on
``request.app.state``; :mod:`query_api.server` creates them and mounts the routers.
"""
