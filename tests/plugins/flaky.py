"""A plugin that fails on its first two calls, then writes a marker (error_behavior=retry)."""


def process_writes(influxdb3_local, table_batches, args=None):
    attempts = influxdb3_local.cache.get("attempts", default=0) + 1
    influxdb3_local.cache.put("attempts", attempts, ttl=600)
    if attempts < 3:
        raise RuntimeError(f"flaky failure {attempts}")
    for table_batch in table_batches:
        for row in table_batch["rows"]:
            influxdb3_local.write(LineBuilder("flaky_done").int64_field("attempts", attempts)
                                  .time_ns(row["time"]))
