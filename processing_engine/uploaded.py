"""Plugins uploaded to the catalog (``/api/v3/plugins/files``), made loadable in any process:
the source is read from Redis and written once under a folder named by its content hash, so
every worker and API replica runs the same code and an update is a new path (reloaded)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import redis

from persist.plugin_files import k_plugin_files, plugin_name_problem


class UploadedPlugins:
    """Local copies of uploaded plugins (synchronous: used from plugin threads)."""

    def __init__(self, client: redis.Redis, namespace: str, cache_dir: Path):
        self.client = client
        self.key = k_plugin_files(namespace)
        self.cache_dir = Path(cache_dir)

    def path(self, filename: str) -> Path | None:
        """The local file of an uploaded plugin, or None when none is uploaded by that name."""
        if plugin_name_problem(filename):
            return None
        content = self.client.hget(self.key, filename)
        if content is None:
            return None
        target = self.cache_dir / hashlib.sha256(content).hexdigest()[:24] / filename
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(content)
            partial.replace(target)
        return target
