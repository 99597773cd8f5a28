"""Request plugin: writes through ``influxdb3_local`` a mix of good and bad lines, as given."""


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    try:
        influxdb3_local.write_sync(query_parameters["sync"])
        outcome = "written"
    except Exception as exc:  # noqa: BLE001 - the write's refusal, as the plugin sees it
        outcome = f"{type(exc).__name__}: {exc}"
    for line in query_parameters.get("buffered", "").split("|"):
        if line:
            influxdb3_local.write(line)
    return {"sync": outcome}
