"""A plugin that sleeps (10 s unless told otherwise) on every write it sees."""
import time


def process_writes(influxdb3_local, table_batches, args=None):
    seconds = float(args.get("seconds", "10")) if args else 10.0
    influxdb3_local.info("sleeping")
    time.sleep(seconds)
    influxdb3_local.info("woke up")
