"""Request plugin: runs the SQL it is given through ``influxdb3_local.query``; a refused query
answers 400 with the engine's message."""


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    try:
        rows = influxdb3_local.query(query_parameters["q"])
    except Exception as exc:  # noqa: BLE001 - the plugin API's QueryError
        return {"error": str(exc)}, 400
    return {"rows": rows}
