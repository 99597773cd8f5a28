"""Loading plugin code and calling it off the event loop.

A plugin is a ``.py`` file under the plugin directory, executed in its own globals (with
``LineBuilder`` and its errors injected, as InfluxDB 3 does), or a directory with an
``__init__.py``, imported as a package. Each trigger gets its own copy, reloaded when the file
changes, so module-level state is per trigger.

Calls run in daemon threads: a plugin that blocks or sleeps holds only its own thread, never
the event loop that drives ingest or other triggers, and a stuck plugin cannot keep the process
from exiting. A call that passes its time limit is reported as failed while its thread runs
out; at most ``MAX_THREADS`` calls run at once per process, so stuck plugins cannot pile up
threads without bound.
"""
from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from processing_engine.line_builder import PLUGIN_GLOBALS

MAX_THREADS = 16


class PluginNotFound(FileNotFoundError):
    pass


class PluginTimeout(TimeoutError):
    pass


def plugin_path(plugin_dir: str, filename: str) -> Path:
    """The plugin file or package under ``plugin_dir``; refuses paths that leave it."""
    if filename.startswith("gh:"):
        raise PluginNotFound(f"{filename}: plugins from GitHub are not fetched; copy the file "
                             "into the plugin directory (INFLUENT_PLUGIN_DIR)")
    if not plugin_dir:
        raise PluginNotFound("no plugin directory configured (INFLUENT_PLUGIN_DIR)")
    root = Path(plugin_dir).resolve()
    path = (root / filename).resolve()
    if root not in path.parents and path != root:
        raise PluginNotFound(f"{filename}: outside the plugin directory")
    if path.is_dir() and (path / "__init__.py").is_file():
        return path
    if path.is_file():
        return path
    raise PluginNotFound(f"plugin file not found: {filename} (in {root})")


def _version(path: Path) -> tuple[int, ...]:
    if path.is_dir():
        return tuple(sorted(p.stat().st_mtime_ns for p in path.rglob("*.py")))
    return (path.stat().st_mtime_ns,)


def _exec_file(path: Path, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name, "__file__": str(path), **PLUGIN_GLOBALS}
    code = compile(path.read_text(), str(path), "exec")
    exec(code, namespace)  # noqa: S102 - running the operator's plugin is the point
    return namespace


def _import_package(path: Path, name: str) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    module: ModuleType = importlib.util.module_from_spec(spec)
    module.__dict__.update(PLUGIN_GLOBALS)
    sys.modules[name] = module  # so the package's relative imports resolve
    spec.loader.exec_module(module)
    return module.__dict__


@dataclass
class _Loaded:
    version: tuple[int, ...]
    namespace: dict[str, Any]


class PluginLoader:
    """Plugin namespaces per trigger, reloaded when their files change (thread-safe)."""

    def __init__(self, plugin_dir: str, uploaded=None):
        self.plugin_dir = plugin_dir
        self.uploaded = uploaded  # processing_engine.uploaded.UploadedPlugins: looked up first
        self._loaded: dict[tuple[str, str], _Loaded] = {}
        self._lock = threading.Lock()

    def function(self, owner: str, filename: str, function: str) -> Callable[..., Any]:
        path = (self.uploaded.path(filename) if self.uploaded else None) or \
            plugin_path(self.plugin_dir, filename)
        version = _version(path)
        key = (owner, str(path))
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is None or loaded.version != version:
                name = f"influent_plugin_{abs(hash(key)):x}"
                ns = _import_package(path, name) if path.is_dir() else _exec_file(path, name)
                loaded = self._loaded[key] = _Loaded(version, ns)
        fn = loaded.namespace.get(function)
        if not callable(fn):
            raise AttributeError(f"plugin {filename} has no function {function}()")
        return fn


_slots = threading.BoundedSemaphore(MAX_THREADS)


async def call_in_thread(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn()`` in a daemon thread; its result, its exception, or PluginTimeout."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()
    while not _slots.acquire(blocking=False):
        await asyncio.sleep(0.05)

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, setter, value)
        except RuntimeError:  # the loop closed meanwhile (process shutting down)
            pass

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - everything the plugin raises is reported
            deliver(future.set_exception, exc)
        else:
            deliver(future.set_result, result)
        finally:
            _slots.release()

    threading.Thread(target=run, name="influent-plugin", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except asyncio.TimeoutError:
        raise PluginTimeout(f"plugin call did not return within {timeout:g}s") from None
