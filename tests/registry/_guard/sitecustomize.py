"""A process and network guard, loaded by every Python interpreter that has this directory on ``PYTHONPATH``.

It records each child process (``subprocess``, ``os.system``, ``os.exec*``, ``os.spawn*``, ``os.posix_spawn*``)
and each network connection or name lookup in ``$GPYTORCH_EXT_GUARD_LOG``, one JSON object a line:
``{"pid": ..., "kind": "process" | "network", "what": [...]}``. A child process named pip or git, and any
connection to a non-local address, is refused (``PermissionError``) after being recorded. Children inherit the
environment, so Python grandchildren are guarded too.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess

_LOG = os.environ.get("GPYTORCH_EXT_GUARD_LOG")


def _record(kind: str, what: list[str]) -> None:
    with open(_LOG, "a", encoding="utf-8") as fh:  # type: ignore[arg-type]
        fh.write(json.dumps({"pid": os.getpid(), "kind": kind, "what": what}) + "\n")


def program_names(argv: list[str]) -> set[str]:
    """The programs a command line runs: each word's base name, and the module of ``python -m MODULE``."""
    words = [w for arg in argv for w in str(arg).split()]
    names = {os.path.basename(w) for w in words}
    names |= {words[i + 1].split(".")[0] for i, w in enumerate(words[:-1]) if w == "-m"}
    return names


def forbidden(argv: list[str]) -> bool:
    return any(name == "git" or name.startswith("pip") for name in program_names(argv))


def _argv(args: object) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        return [os.fsdecode(args)]
    return [os.fsdecode(a) for a in args]  # type: ignore[union-attr]


def _check(argv: list[str]) -> None:
    _record("process", argv)
    if forbidden(argv):
        raise PermissionError(f"guard: refused to start {argv!r}")


def _guard_process(fn, argv_of):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        _check(argv_of(*args, **kwargs))
        return fn(*args, **kwargs)

    return guarded


def _local(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes):
        host = host.decode()
    return host is None or (isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127.")))


def _guard_network(fn, what):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        target = what(*args, **kwargs)
        if target is not None:
            _record("network", [repr(target)])
            if not _local(target):
                raise PermissionError(f"guard: refused network access to {target!r}")
        return fn(*args, **kwargs)

    return guarded


def _install() -> None:
    execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def _execute_child(self, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
        _check(_argv(args))
        return execute_child(self, args, *rest, **kwargs)

    subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
    os.system = _guard_process(os.system, lambda cmd: _argv(cmd))
    for name in ("execv", "execve"):
        setattr(os, name, _guard_process(getattr(os, name), lambda path, args, *_: _argv(args)))
    for name in ("posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            setattr(os, name, _guard_process(getattr(os, name), lambda path, argv, *_, **__: _argv(argv)))
    # os.spawn* fork and then call os.execv* (guarded above) in the child

    def _connect_target(sock, address):  # type: ignore[no-untyped-def]
        return None if sock.family == getattr(socket, "AF_UNIX", None) else address

    socket.socket.connect = _guard_network(socket.socket.connect, _connect_target)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guard_network(socket.socket.connect_ex, _connect_target)  # type: ignore[method-assign]
    socket.getaddrinfo = _guard_network(socket.getaddrinfo, lambda host, *_, **__: host)


if _LOG:
    _install()
