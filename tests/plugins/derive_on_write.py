"""On-write plugin: for every row written, write a derived point to "<table>_derived".

Written as an InfluxDB 3 plugin (``LineBuilder`` is injected by the engine). Triggered with
``all_tables``, it would feed on its own output forever without the engine's loop guard.
"""


def process_writes(influxdb3_local, table_batches, args=None):
    factor = float(args["factor"]) if args and "factor" in args else 100.0
    for table_batch in table_batches:
        table_name = table_batch["table_name"]
        influxdb3_local.info(f"saw table {table_name} with {len(table_batch['rows'])} rows")
        for row in table_batch["rows"]:
            if "usage" not in row:
                continue
            line = LineBuilder(f"{table_name}_derived")
            line.tag("host", row.get("host", "unknown"))
            line.float64_field("usage_scaled", row["usage"] * factor)
            line.time_ns(row["time"])
            influxdb3_local.write(line)
