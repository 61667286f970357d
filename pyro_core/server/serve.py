"""Run the ASGI app (app.py) over HTTP with hypercorn's trio worker, plus the storage's timer.

Owns: the hypercorn Config, graceful shutdown and the periodic ``Storage.tick``.
Must not know: routes or request handling (app.py), command-line flags (cli.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from pyro_core.server.storage import Storage

__all__ = ["DEFAULT_GRACEFUL_TIMEOUT", "DEFAULT_TICK_INTERVAL", "serve", "tick_forever"]

log = logging.getLogger(__name__)

DEFAULT_TICK_INTERVAL = 5.0
DEFAULT_GRACEFUL_TIMEOUT = 10.0


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def tick_forever(
    storage: Storage, interval: float = DEFAULT_TICK_INTERVAL, clock: Callable[[], float] = time.time
) -> None:
    """Call ``storage.tick(clock())`` every ``interval`` seconds (in a worker thread: it fsyncs)."""
    while True:
        await trio.sleep(interval)
        try:
            await trio.to_thread.run_sync(storage.tick, clock())
        except Exception:
            log.exception("storage maintenance failed")


async def serve(
    app: Any,
    host: str,
    port: int,
    *,
    storage: Storage | None = None,
    tick_interval: float = DEFAULT_TICK_INTERVAL,
    clock: Callable[[], float] = time.time,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status.started`` gets the bound URLs
    (``["http://127.0.0.1:4040"]``; port 0 picks a free one). With ``storage``, its ``tick`` runs every
    ``tick_interval`` seconds.

    Cancellation is graceful: the listeners close, requests in flight get up to ``graceful_timeout``
    seconds to finish, then this returns (re-raising the cancellation).
    """
    config = Config()
    config.bind = [_bind(host, port)]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = log
    stop = trio.Event()
    stopped = trio.Event()

    async def run_server(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        # Shielded: an outer cancellation only sets `stop`, and hypercorn shuts down gracefully.
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = math.inf
                await hypercorn_serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run_server)
        if storage is not None:
            nursery.start_soon(tick_forever, storage, tick_interval, clock)
        task_status.started(binds)
        try:
            await stopped.wait()  # hypercorn only returns early when it failed
        finally:
            stop.set()
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + graceful_timeout + 5.0
                await stopped.wait()
            nursery.cancel_scope.cancel()
