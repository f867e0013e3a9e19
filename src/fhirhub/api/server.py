"""Running the ASGI app: one uvicorn server per worker process, each with its own
listening socket on the same port (``SO_REUSEPORT``), so that the kernel spreads new
connections evenly over the workers.

uvicorn's own ``--workers`` shares one socket between processes, and whichever process is
awake accepts a burst of new connections: under a benchmark's 16 simultaneous clients one
worker took every connection while the other idled. With a socket per worker the kernel
balances by connection instead.

The parent process only supervises: it restarts a worker that dies, and stops them all on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from fhirhub.config import Settings

log = logging.getLogger("fhirhub.server")


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        "fhirhub.api.asgi:app", factory=True, loop="uvloop", http="httptools",
        log_level=settings.log_level, access_log=False, server_header=False,
        proxy_headers=False, lifespan="on", timeout_keep_alive=30,
    )


def _worker(settings: Settings) -> None:
    """One worker process: its own socket, its own engine (built by the app factory)."""
    sock = _socket(settings.host, settings.port)
    uvicorn.Server(_config(settings)).run(sockets=[sock])


def _claim_port(host: str, port: int) -> int:
    """Hold a lock for host:port for as long as this process lives.

    ``SO_REUSEPORT`` would let a second fhirhub join this one's sockets on the same port
    (and share its connections, whatever its database); the lock makes that an error.
    Other programs on the port fail to bind as usual, since they do not set the option."""
    path = os.path.join(tempfile.gettempdir(), f"fhirhub-{host.replace(':', '_')}-{port}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(errno.EADDRINUSE,
                      "another fhirhub server is already listening there") from None
    return fd


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM: in this process for one worker, else supervised."""
    _claim_port(settings.host, settings.port)
    if settings.workers == 1:
        _worker(settings)
        return
    # Bind once here first, so a port in use fails at once with a clear error.
    _socket(settings.host, settings.port).close()
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    workers: list[BaseProcess] = []
    for _ in range(settings.workers):
        started = context.Process(target=_worker, args=(settings,), daemon=False)
        started.start()
        workers.append(started)
    restarts: list[float] = []
    while not stopping:
        time.sleep(0.5)
        for i, worker in enumerate(workers):
            if worker.is_alive() or stopping:
                continue
            restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
            if len(restarts) > 5 * settings.workers:
                log.error("workers keep dying; stopping")
                stopping = True
                break
            log.warning("worker %s exited with %s; starting another", worker.pid,
                        worker.exitcode)
            replacement = context.Process(target=_worker, args=(settings,), daemon=False)
            replacement.start()
            workers[i] = replacement
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(timeout=15)
        if worker.is_alive():
            worker.kill()


__all__ = ["serve"]
