"""Scheduled plugin: average a table per host with a query and write the result, counting its
runs in the global cache."""


def process_scheduled_call(influxdb3_local, call_time, args=None):
    source = args["source"]
    target = args["target"]
    rows = influxdb3_local.query(
        f"SELECT host, avg(usage) AS usage, count(*) AS n FROM {source} GROUP BY host ORDER BY host")
    for row in rows:
        line = LineBuilder(target)
        line.tag("host", row["host"])
        line.float64_field("usage_avg", row["usage"])
        line.int64_field("samples", row["n"])
        influxdb3_local.write(line)
    runs = influxdb3_local.cache.get("runs", default=0, use_global=True) + 1
    influxdb3_local.cache.put("runs", runs, use_global=True)
    influxdb3_local.info(f"downsampled {len(rows)} series at {call_time.isoformat()}")
