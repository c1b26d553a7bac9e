"""The Streamlit ops console in headless Chromium against the session's real Triton server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROBE_MODEL
from tests.e2e.conftest import App, Browser, save_docs_image
from tritonhf.client import TritonHFClient
from tritonhf.server.launcher import TritonServer
from tritonhf.server.ports import free_ports

EXCEPTION = '[data-testid="stException"]'  # an exception Streamlit shows (a traceback)
ERROR = '[data-testid="stAlertContentError"]'  # st.error: how the console reports failures


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark report laid out like ``tritonhf bench --out`` writes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = tmp_path_factory.mktemp("bench") / "minilm-cpu"
    folder.mkdir()
    figure, axes = plt.subplots(figsize=(5, 3))
    axes.plot([1, 8, 32], [48.0, 171.0, 204.0], marker="o")
    axes.set(xlabel="concurrency", ylabel="requests/s", title="throughput vs concurrency")
    figure.savefig(folder / "bench.png", dpi=72)
    plt.close(figure)
    (folder / "bench.csv").write_text("concurrency,throughput\n1,48.0\n8,171.0\n32,204.0\n")
    (folder / "interrupted.csv").write_text("")  # a run killed before it wrote a line
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n" + bytes(range(90)))  # not an image
    plot = (folder / "bench.png").read_bytes()
    (folder / "cut-short.png").write_bytes(plot[: len(plot) // 2])  # a write that stopped
    (folder / "summary.md").write_text(
        "# tritonhf bench: minilm\n\n| concurrency | requests/s |\n|---|---|\n"
        "| 1 | 48.0 |\n| 8 | 171.0 |\n| 32 | 204.0 |\n\n![throughput vs p99](bench.png)\n"
    )
    return folder.parent


@pytest.fixture(scope="module")
def console(start_app: Any, server: TritonServer, bench_dir: Path) -> App:
    config = server.config
    return start_app(
        "console",
        [
            "--grpc-url",
            config.grpc_url,
            "--http-url",
            config.http_url,
            "--metrics-url",
            config.metrics_url,
            "--bench-dir",
            str(bench_dir),
            "--timeout",
            "60",
        ],
        ready_path="/_stcore/health",
    )


@pytest.fixture(scope="module")
def dead_console(start_app: Any, tmp_path_factory: pytest.TempPathFactory) -> App:
    grpc, http, metrics = free_ports(3)
    return start_app(
        "console",
        [
            "--grpc-url",
            f"127.0.0.1:{grpc}",
            "--http-url",
            f"127.0.0.1:{http}",
            "--metrics-url",
            f"http://127.0.0.1:{metrics}/metrics",
            "--bench-dir",
            str(tmp_path_factory.mktemp("no-reports")),
        ],
        ready_path="/_stcore/health",
    )


@pytest.fixture
def traffic(server: TritonServer) -> Iterator[None]:
    """Requests to ``minilm`` in the background while the test runs."""
    stop = threading.Event()
    client = TritonHFClient(server.config.grpc_url, timeout_s=60)
    # The first request imports tritonclient.grpc here, not in the thread: an import racing
    # pytest's own iteration over sys.modules failed a run ("dictionary changed size").
    client.encode(["the console should see this request"])

    def send() -> None:
        while not stop.is_set():
            client.encode(["the console should see this request"])
            stop.wait(0.1)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(timeout=30)
        client.close()


@pytest.fixture
def probe_reloaded(server: TritonServer) -> Iterator[str]:
    """The probe model, loaded again after the test whatever it did to it."""
    yield PROBE_MODEL
    with TritonHFClient(server.config.grpc_url, timeout_s=60) as client:
        if not client.is_model_ready(PROBE_MODEL):
            client.load_model(PROBE_MODEL)


def open_console(browser: Browser, app: App) -> Any:
    page = browser.page
    page.set_viewport_size({"width": 1280, "height": 2200})  # Streamlit scrolls inside
    page.goto(app.url)
    page.get_by_role("heading", name="tritonhf ops console").wait_for()
    return page


# The rows of the first table whose header has ``column``, as lists of cell texts.
ROWS_OF = """(column) => {
    const tables = [...document.querySelectorAll('table')].map(table =>
        [...table.querySelectorAll('tr')].map(tr =>
            [...tr.querySelectorAll('th,td')].map(cell => cell.innerText.trim())));
    return tables.find(rows => rows.length && rows[0].includes(column)) || [];
}"""


def rows_of(page: Any, column: str) -> list[list[str]]:
    return list(page.evaluate(ROWS_OF, column))


def test_models_metrics_reports_and_load_unload(
    browser: Browser, console: App, traffic: None, probe_reloaded: str
) -> None:
    page = open_console(browser, console)
    page.get_by_text(re.compile(r"\d+/\d+ models ready")).wait_for()
    page.wait_for_function(
        f"() => ({ROWS_OF})('pipeline').some(cells => cells[1] === 'minilm_tokenizer')"
    )
    states = {row[1]: row for row in rows_of(page, "pipeline")[1:]}
    assert states["minilm_tokenizer"][0] == "minilm"  # grouped under its pipeline
    assert states["minilm_tokenizer"][3] == "READY"

    # Rates from two scrapes: the background traffic shows up as requests/s > 0 for minilm.
    page.get_by_text(re.compile(r"over the last \d+\.\d s")).wait_for()
    page.wait_for_function(
        f"""() => ({ROWS_OF})('requests/s').some(
            cells => cells[0] === 'minilm' && parseFloat(cells[2]) > 0)""",
        timeout=60_000,
    )
    rates = {row[0]: row for row in rows_of(page, "requests/s")[1:]}
    assert float(rates["minilm"][6]) > 0  # mean latency, ms

    page.get_by_text("tritonhf bench: minilm").wait_for()
    page.get_by_text("bench.png", exact=True).wait_for()  # the plot's caption
    assert page.locator('img[src*="/media/"]').count() == 1
    assert ["32", "204.0"] in rows_of(page, "concurrency")
    # An unreadable CSV or plot is a warning, not an error page.
    page.get_by_text("could not be read as CSV").wait_for(state="attached")
    page.get_by_text(re.compile(r"cut-short\.png`? could not be shown: cut short")).wait_for()
    page.get_by_text(re.compile(r"garbage\.png`? could not be shown: not an image")).wait_for()

    # Unload and load the probe model (explicit model-control mode).
    page.get_by_role("combobox", name=re.compile("Model")).click()
    page.get_by_role("option", name=probe_reloaded, exact=True).click()
    page.get_by_role("button", name="Unload").click()
    page.get_by_text(f"Unloaded {probe_reloaded}.").wait_for()
    page.get_by_text(re.compile(rf"not ready: .*{probe_reloaded}")).wait_for()
    page.get_by_role("button", name="Load", exact=True).click()
    page.get_by_text(f"Loaded {probe_reloaded}.").wait_for(timeout=60_000)

    assert page.locator(EXCEPTION).count() == 0
    assert page.locator(ERROR).count() == 0
    shot = browser.screenshot("console")
    save_docs_image(shot, "console")


def test_a_server_that_is_down_gets_a_clear_message(browser: Browser, dead_console: App) -> None:
    page = open_console(browser, dead_console)
    page.get_by_text("Triton is not reachable").wait_for()
    page.get_by_text("cannot read Triton's metrics").wait_for()
    page.get_by_text("No benchmark reports").wait_for()
    assert page.locator(ERROR).count() == 2  # the two clear messages, nothing else
    assert page.locator(EXCEPTION).count() == 0
    browser.screenshot("console-server-down")
