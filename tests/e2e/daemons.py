"""Real monitoring daemons (Debian's Prometheus and Alertmanager) for the e2e tests."""

from __future__ import annotations

import shutil
import subprocess  # nosec B404
import time
import urllib.request
from pathlib import Path

import pytest

from tritonhf.server.ports import free_ports


class Daemon:
    """One of ``binaries`` (the first installed) on a free 127.0.0.1 port, logging to ``log``.

    ``arguments`` are its flags without the listen address, which ``--web.listen-address``
    adds; ``ready_path`` answers once it serves.
    """

    def __init__(
        self, binaries: tuple[str, ...], arguments: list[str], log: Path, ready_path: str
    ) -> None:
        (self.port,) = free_ports(1)
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = binaries[0]
        binary = next((found for b in binaries if (found := shutil.which(b))), None)
        if binary is None:
            pytest.fail(f"{self.name} is not installed: run `make system-deps`")
        self._ready_url = f"{self.base}{ready_path}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [binary, *arguments, f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited; see its log"
            try:
                with urllib.request.urlopen(self._ready_url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"{self.name} was not ready after {timeout_s} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
