"""On-persist plugin: record every new Parquet file as a point."""


def process_persist(influxdb3_local, persist_event, args=None):
    line = LineBuilder("persisted_files")
    line.tag("table", persist_event["table"])
    line.int64_field("rows", persist_event["rows"])
    line.string_field("path", persist_event["path"])
    influxdb3_local.write(line)
    influxdb3_local.info("persisted", persist_event["path"])
