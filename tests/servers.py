"""Helpers of the serving tests: a trained registry, free ports, and HTTP server processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quiet_env(**extra: str) -> dict[str, str]:
    """This environment without the MLflow URIs that other tests set, plus ``extra``; this
    interpreter's scripts (``uvicorn``, which ``mlflow models serve`` runs) first on PATH."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}  # fmt: skip
    path = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return {**env, "PATH": path, "MLFLOW_ENABLE_ASYNC_LOGGING": "false", **extra}


@contextmanager
def running(command: list[str], url: str, log: Path, cwd: Path, env: dict[str, str],
            ready_path: str, timeout: float = 120) -> Iterator[subprocess.Popen]:  # fmt: skip
    """Start a server process, wait until ``url + ready_path`` answers, stop it at the end.

    The server runs in a session of its own, which is stopped whole: ``mlflow models serve``
    with a virtualenv runs the HTTP server as a child that would outlive its parent."""
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                  start_new_session=True)  # fmt: skip
        try:
            _wait_for(url + ready_path, server, log, timeout)
            yield server
        finally:
            _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _wait_for(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the server did not answer in {timeout} s: {log.read_text()[-3000:]}")


def call(url: str, payload: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """POST ``payload`` as JSON (or ``raw`` bytes), or GET without either; the status and
    the decoded JSON answer, also for 4xx and 5xx."""
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
