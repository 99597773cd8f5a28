"""A plugin that fails on every call."""


def process_writes(influxdb3_local, table_batches, args=None):
    influxdb3_local.warn("about to fail")
    raise ValueError("boom from plugin")
