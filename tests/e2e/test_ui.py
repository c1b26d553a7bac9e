"""The Gradio demo in headless Chromium against the session's real Triton server."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLASSIFIER
from tests.e2e.conftest import App, Browser, save_docs_image
from tests.integration.models import SENTIMENT_LABELS
from tritonhf.server.launcher import TritonServer
from tritonhf.server.ports import free_ports

LONG_TEXT = " ".join(["tokens beyond the limit"] * 150)  # ~600 tokens, MiniLM reads 256


@pytest.fixture(scope="module")
def demo(start_app: Any, server: TritonServer) -> App:
    """``tritonhf ui`` against the shared server (gRPC first, HTTP one click away)."""
    config = server.config
    return start_app(
        "ui",
        [
            "--grpc-url",
            config.grpc_url,
            "--http-url",
            config.http_url,
            "--model",
            "minilm",
            "--timeout",
            "60",
        ],
    )


@pytest.fixture(scope="module")
def dead_demo(start_app: Any) -> App:
    """``tritonhf ui`` pointed at ports where no Triton listens."""
    grpc, http = free_ports(2)
    return start_app("ui", ["--grpc-url", f"127.0.0.1:{grpc}", "--http-url", f"127.0.0.1:{http}"])


def assert_no_error_shown(page: Any) -> None:
    """No Gradio error toast, no error status on a component, no Python traceback."""
    assert page.locator('[data-testid="toast-body"].error').count() == 0
    assert page.locator(".error", has_text=re.compile(r"^\s*Error\s*$")).count() == 0
    assert "Traceback" not in page.content()


def open_demo(browser: Browser, app: App) -> Any:
    page = browser.page
    page.goto(app.url)
    page.locator("#health").get_by_text("Server").wait_for()
    return page


def test_compare_search_feedback_and_status_panel(browser: Browser, demo: App) -> None:
    page = open_demo(browser, demo)
    health = page.locator("#health")
    assert "is ready" in health.inner_text()
    models = page.locator("#models")
    models.get_by_text("minilm", exact=True).first.wait_for()
    assert "READY" in models.inner_text()

    page.locator("#sentences textarea").fill(
        "The battery lasts a full workday.\n"
        "I can use this laptop all day without charging it.\n"
        f"{LONG_TEXT}"
    )
    page.locator("#compare").click()
    heatmap = page.locator("#heatmap table.tritonhf-heatmap")
    heatmap.wait_for()
    assert heatmap.locator("td").count() == 9
    info = page.locator("#compare-info")
    info.get_by_text("request id").wait_for()
    text = info.inner_text()
    assert "minilm v1" in text
    assert "gRPC" in text
    assert re.search(r"latency \d+\.\d ms", text)
    assert re.search(r"tokens \d+, \d+, 256", text)  # the long text was cut to 256 tokens
    assert "truncated: text 3 was longer than the model reads and was cut to 256 tokens" in text

    page.locator("#query textarea, #query input").first.fill("my parcel never arrived")
    page.locator("#search").click()
    hits = page.locator("#hits")
    page.locator("#search-info").get_by_text("request id").wait_for(timeout=90_000)
    assert hits.get_by_role("row").count() == 1 + 5  # the header and the top 5
    assert "order" in hits.inner_text().lower() or "deliver" in hits.inner_text().lower()

    page.locator("#embed-up").click()
    thanks = page.locator("#embed-feedback")
    thanks.get_by_text("Thanks! Recorded thumbs up").wait_for()
    search_id = re.search(r"request id (\w+)", page.locator("#search-info").inner_text())
    assert search_id is not None
    assert search_id.group(1) in thanks.inner_text()
    page.locator("#embed-up").click()
    thanks.get_by_text("is already rated (thumbs up)").wait_for()

    assert_no_error_shown(page)
    shot = browser.screenshot("demo-embeddings")
    save_docs_image(shot, "demo")
    assert_client_metrics_served(demo)


def test_classify_over_http_with_a_corrected_label(
    browser: Browser, demo: App, server: TritonServer
) -> None:
    page = open_demo(browser, demo)
    page.get_by_label("http").check()
    page.locator("#health").get_by_text(server.config.http_url).wait_for()
    page.get_by_role("tab", name="Classification").click()
    dropdown = page.locator("#cls-model input")
    # The classifier is discovered from the server (no --classifier flag).
    page.wait_for_function("() => document.querySelector('#cls-model input').value === 'tinycls'")
    assert dropdown.input_value() == CLASSIFIER

    page.locator("#review textarea").fill("Great service, friendly staff, I will come back!")
    page.locator("#classify").click()
    info = page.locator("#classify-info")
    info.get_by_text("request id").wait_for()
    assert "HTTP" in info.inner_text()
    assert f"{CLASSIFIER} v1" in info.inner_text()
    scores = page.locator("#scores")
    for label in SENTIMENT_LABELS:  # a confidence bar for every class
        scores.get_by_text(label).first.wait_for()

    page.locator("#corrected input").click()
    page.get_by_role("option", name="neutral").click()
    page.locator("#cls-down").click()
    page.locator("#cls-feedback").get_by_text(
        "Recorded thumbs down, corrected label neutral"
    ).wait_for()
    # The server's feedback model counted it.
    with urllib.request.urlopen(server.config.metrics_url, timeout=10) as response:  # noqa: S310
        metrics = response.read().decode()
    assert re.search(
        r'tritonhf_feedback_corrections_total\{[^}]*label="neutral"[^}]*\} [1-9]', metrics
    )
    # One rating per result; a new result starts with no correction chosen.
    page.locator("#cls-up").click()
    page.locator("#cls-feedback").get_by_text("is already rated (thumbs down)").wait_for()
    first_id = info.inner_text()
    page.locator("#classify").click()
    page.wait_for_function(
        "(before) => { const el = document.querySelector('#classify-info');"
        " return el.innerText.includes('request id') && el.innerText !== before; }",
        arg=first_id,
    )
    # The dropdown re-renders in the same update as the info, not always in the same frame.
    page.wait_for_function("() => document.querySelector('#corrected input').value === ''")
    page.locator("#cls-up").click()
    page.locator("#cls-feedback").get_by_text("Recorded thumbs up for request").wait_for()
    # A rating given after the text was edited would go to a text no longer shown.
    rated_id = info.inner_text()  # read before the click: the answer may come at once
    page.locator("#classify").click()
    page.wait_for_function(
        "(before) => document.querySelector('#classify-info').innerText !== before",
        arg=rated_id,
    )
    page.locator("#review textarea").press_sequentially(" Edited.")
    page.locator("#cls-down").click()
    page.locator("#cls-feedback").get_by_text("send a request first").wait_for()
    assert_no_error_shown(page)
    browser.screenshot("demo-classification")


def test_sixteen_sentences_keep_the_heatmap_inside_its_column(browser: Browser, demo: App) -> None:
    page = open_demo(browser, demo)
    page.locator("#sentences textarea").fill(
        "\n".join(f"A sentence about topic number {i} and a few more words" for i in range(16))
    )
    page.locator("#compare").click()
    box = page.locator("#heatmap .tritonhf-heatmap-box")
    box.locator("td").nth(16 * 16 - 1).wait_for()
    box.scroll_into_view_if_needed()
    # Just right of the column, level with the first rows: the search column, not the heatmap
    # (the table is wider than the column, and scrolls sideways inside it instead).
    covers_search_column = box.evaluate(
        """(box) => {
            const column = document.querySelector('#sentences').getBoundingClientRect();
            const top = box.getBoundingClientRect().top + 40;
            return box.contains(document.elementFromPoint(column.right + 30, top));
        }"""
    )
    assert not covers_search_column
    assert box.evaluate("(box) => box.scrollWidth > box.clientWidth")  # 16 columns do not fit
    assert_no_error_shown(page)


def test_a_model_that_is_not_served_gets_a_clear_message(browser: Browser, demo: App) -> None:
    page = open_demo(browser, demo)
    model = page.locator("#embed-model input")
    model.fill("no_such_model")
    model.press("Enter")
    page.locator("#compare").click()
    info = page.locator("#compare-info")
    info.get_by_text("Model not served").wait_for()
    assert "no_such_model" in info.inner_text()
    assert_no_error_shown(page)
    browser.screenshot("demo-model-missing")


def test_a_server_that_is_down_gets_a_clear_message(browser: Browser, dead_demo: App) -> None:
    page = open_demo(browser, dead_demo)
    page.locator("#health").get_by_text("Server down").wait_for()
    page.locator("#compare").click()
    info = page.locator("#compare-info")
    info.get_by_text("Triton is not reachable").wait_for()
    assert "make run" in info.inner_text()
    page.get_by_role("tab", name="Classification").click()
    page.locator("#classify").click()
    page.locator("#classify-info").get_by_text("Triton is not reachable").wait_for()
    assert_no_error_shown(page)
    browser.screenshot("demo-server-down")


def assert_client_metrics_served(app: App) -> None:
    """The demo's client-side metrics are on its own port, for Prometheus' ``ui`` job."""
    with urllib.request.urlopen(f"{app.url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    assert re.search(r'tritonhf_client_requests_total\{model="minilm",operation="encode"', text)
    assert re.search(r'tritonhf_client_requests_total\{model="minilm",operation="feedback"', text)
    assert re.search(r'tritonhf_ui_requests_total\{action="compare",outcome="ok"', text)
    # Ratings too, the ones the demo refuses itself (a second rating) included.
    assert re.search(r'tritonhf_ui_requests_total\{action="feedback",outcome="ok"', text)
    assert re.search(
        r'tritonhf_ui_requests_total\{action="feedback",outcome="InvalidInputError"', text
    )
    assert "tritonhf_client_request_duration_seconds_bucket" in text


def test_the_demo_stops_on_ctrl_c_even_when_started_with_sigint_ignored(
    tmp_path: Path,
) -> None:
    """``make run &`` or a script starts the demo with SIGINT ignored; Ctrl-C must still stop it."""
    grpc, http, port = free_ports(3)
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tritonhf.cli.main", "ui", "--grpc-url", f"127.0.0.1:{grpc}",
             "--http-url", f"127.0.0.1:{http}", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while b"Ctrl-C stops" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
