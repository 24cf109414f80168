"""A worker process: ``python -m app.esrgan.worker [--gpu N] [--memory-mb M]``.

It reads orders from stdin and writes replies to stdout, each one frame: an 8-byte
big-endian length and a pickle (both ends are this program; nothing else writes to the
pipes). Stdout and stderr are pointed at /dev/null for everything else, because ncnn prints
its progress there. With ``--memory-mb`` the process caps its own address space first, so
a job that would grow beyond it fails alone instead of pressing on the gateway.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import struct
import sys
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")


def read_frame(stream: BinaryIO) -> Any:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        raise EOFError
    (length,) = HEADER.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        raise EOFError
    return pickle.loads(body)


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def _private_stdout() -> BinaryIO:
    """The protocol's own copy of stdout; fds 1 and 2 then go to /dev/null."""
    protocol = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return protocol


def _peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that across
    exec, so it would count the parent the worker was forked from."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reply(engine: Any, order: Any) -> tuple[Any, ...]:
    from app.esrgan.engine import DecodeError, TooLarge

    try:
        return ("ok", engine.run(order), _peak_rss_bytes())
    except DecodeError as exc:
        return ("decode", str(exc), _peak_rss_bytes())
    except TooLarge as exc:
        return ("too_large", str(exc), _peak_rss_bytes())
    except MemoryError:
        return ("memory", "the job needs more memory than the worker may use", 0)
    except Exception as exc:
        return ("failed", type(exc).__name__, _peak_rss_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", type=int, default=None)
    parser.add_argument("--memory-mb", type=int, default=None)
    args = parser.parse_args(argv)
    out = _private_stdout()
    if args.memory_mb:
        cap = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        from app.esrgan.engine import Engine

        engine = Engine(args.gpu)
    except Exception as exc:
        out.write(frame(("unavailable", f"{type(exc).__name__}: {exc}", 0)))
        out.flush()
        return 1
    out.write(frame(("ready", os.getpid(), _peak_rss_bytes())))
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        try:
            order = read_frame(stdin)
        except EOFError:
            return 0
        out.write(frame(_reply(engine, order)))
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
