"""Getting data in from where it lives today: InfluxDB 1.x over HTTP, export files."""
