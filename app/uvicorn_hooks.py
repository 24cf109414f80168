"""The only place the gateway touches uvicorn's private parts; nothing else may.

uvicorn has no public hook for either thing the gateway needs, so both are reached here,
with uvicorn pinned in pyproject.toml to the versions tested (``TESTED_RANGE``) and
``tests/test_uvicorn_hooks.py`` failing when an upgrade moves what they rely on:

- ``forget_signal``: after a signal, uvicorn re-raises it once it has shut down (so the
  process dies "by SIGTERM", exit -15). A completed drain is a clean exit (0), so the
  signal is taken off ``Server._captured_signals``.
- ``use_worker_server``: uvicorn's multi-worker supervisor builds each worker from the
  module attribute ``multiprocess.Process``, whose ``server`` property makes a plain
  ``uvicorn.Server`` (cached in ``_server``); a subclass makes the gateway's instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn
from uvicorn.supervisors import multiprocess

#: The uvicorn versions these hooks are tested with (kept in step with pyproject.toml).
TESTED_RANGE = ">=0.30,<0.55"


def forget_signal(server: uvicorn.Server, sig: int) -> None:
    """uvicorn will not re-raise ``sig`` when it exits."""
    if sig in server._captured_signals:
        server._captured_signals.remove(sig)


class WorkerProcess(multiprocess.Process):
    """A worker whose server is ``make(config)``. Module level, and ``make`` kept on the
    instance, because uvicorn pickles the process object into each spawned worker."""

    make: Callable[[uvicorn.Config], uvicorn.Server] | None = None

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._make = type(self).make
        super().__init__(config, sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            assert self._make is not None, "use_worker_server() was not called"
            self._server = self._make(self.config)
        return self._server


def use_worker_server(make: Callable[[uvicorn.Config], uvicorn.Server]) -> None:
    """Workers started by ``multiprocess.Multiprocess`` from now on serve with ``make``
    (which must be picklable: a module-level function or a ``functools.partial`` of one)."""
    WorkerProcess.make = make
    multiprocess.Process = WorkerProcess  # type: ignore[misc]
