"""Browser fixtures: Debian's Chromium driven by Playwright, and the apps started on free ports.

The apps run as real ``tritonhf ui`` / ``tritonhf console`` processes against the session's
Triton server (tests/conftest.py); every fixture stops what it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tritonhf.server.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "test-screenshots"
CHROMIUM = Path(os.environ.get("TRITONHF_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
APP_STARTUP_S = 90.0


@dataclass
class App:
    """A ``tritonhf`` app process and its URL."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + APP_STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {APP_STARTUP_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def start_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``start_app(command, args)``: run ``tritonhf COMMAND ARGS --port P`` for the module."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: str, args: Sequence[str], *, ready_path: str = "/") -> App:
        (port,) = free_ports(1)
        log = tmp_path_factory.mktemp(f"{command}-app") / "app.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tritonhf.cli.main", command, *args, "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        _wait_for_http(url + ready_path, process, log)
        return App(url=url, process=process, log=log)

    yield start
    for process in started:
        _stop(process)


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium with a fresh profile (never Playwright's own browser download)."""
    if not CHROMIUM.is_file() or shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class Browser:
    """A page plus the JavaScript errors it raised."""

    page: Any
    errors: list[str]

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a PNG under artifacts/test-screenshots/ and return its path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def save_docs_image(screenshot: Path, name: str, *, width: int = 960) -> Path | None:
    """A small copy of ``screenshot`` for the README: ``docs/images/NAME.png``, 128 colours.

    Only with ``TRITONHF_UPDATE_DOCS_IMAGES=1`` (like the golden files), so a test run leaves
    the working tree clean.
    """
    from PIL import Image

    if os.environ.get("TRITONHF_UPDATE_DOCS_IMAGES") != "1":
        return None
    target = ROOT / "docs" / "images" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(screenshot) as image:
        small = image.convert("RGB")
        if small.width > width:
            small = small.resize((width, round(small.height * width / small.width)), Image.LANCZOS)
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def browser(browser_context: Any, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A new tab; the test fails if the page raised an uncaught JavaScript error.

    A failed test leaves a screenshot of the page as ``FAILED-<test>.png``.
    """
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    opened = Browser(page, errors)
    try:
        yield opened
    finally:
        if request.node.stash.get(_CALL_FAILED, False):
            opened.screenshot(f"FAILED-{request.node.name}")
        page.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"
