"""Request plugin: answers JSON with a query result, the request it got and a cached value."""
import json


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    if query_parameters.get("fail"):
        return {"error": "asked to fail"}, 400
    table = query_parameters.get("table", "cpu")
    rows = influxdb3_local.query(f"SELECT count(*) AS n FROM {table}")
    body = json.loads(request_body) if request_body else None
    influxdb3_local.info("request for", table)
    return {
        "hello": query_parameters.get("name", "world"),
        "rows": rows[0]["n"],
        "echo": body,
        "saw_authorization": "authorization" in {k.lower() for k in request_headers},
        "greeting": args.get("greeting") if args else None,
        "runs": influxdb3_local.cache.get("runs", default=0, use_global=True),
    }
