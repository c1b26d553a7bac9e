"""The Streamlit ops console (run by ``tritonhf console``, which starts Streamlit on this file).

Thin on purpose: the data comes from `TritonHFClient`, `tritonhf.console.metrics` and
`tritonhf.console.reports`; the tables from `tritonhf.console.logic`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from tritonhf.cli.parser import path_argument
from tritonhf.client import Protocol, RetryPolicy, TritonHFClient
from tritonhf.console.logic import (
    ConsoleConfig,
    append_history,
    chart_table,
    ensembles_using,
    state_rows,
    summary_line,
)
from tritonhf.console.metrics import Scrape, model_rates, rate_rows, scrape
from tritonhf.console.reports import find_reports, strip_local_images
from tritonhf.errors import ClientError, PermissionDeniedError, TritonHFError


def _config(argv: list[str]) -> ConsoleConfig:
    parser = argparse.ArgumentParser(prog="tritonhf console")
    parser.add_argument("--grpc-url", default=ConsoleConfig.grpc_url)
    parser.add_argument("--http-url", default=ConsoleConfig.http_url)
    parser.add_argument("--protocol", default=ConsoleConfig.protocol.value)
    parser.add_argument("--metrics-url", default=ConsoleConfig.metrics_url)
    parser.add_argument("--bench-dir", type=path_argument, default=ConsoleConfig.bench_dir)
    parser.add_argument("--timeout", type=float, default=ConsoleConfig.timeout_s)
    args = parser.parse_args(argv)
    return ConsoleConfig(
        grpc_url=args.grpc_url,
        http_url=args.http_url,
        protocol=Protocol(args.protocol),
        metrics_url=args.metrics_url,
        bench_dir=args.bench_dir,
        timeout_s=args.timeout,
    )


@st.cache_resource
def _client(url: str, protocol: str, timeout_s: float) -> TritonHFClient:
    # One quick try: the console reports a server that is down instead of waiting on it.
    return TritonHFClient(
        url, protocol=protocol, timeout_s=timeout_s, retry=RetryPolicy(attempts=1)
    )


def repository_section(config: ConsoleConfig, client: TritonHFClient) -> None:
    """Server health, the repository index, and load/unload."""
    health = client.health()
    if not health.live:
        st.error(
            f"Triton is not reachable at {client.url} ({client.protocol.value}). Start it with "
            "`make run` or `tritonhf serve`, or check --grpc-url/--http-url."
        )
        return
    try:
        states = client.models()
    except TritonHFError as exc:  # a refusal, or a malformed key in the environment
        st.error(f"Could not read the repository index: {exc}")
        return
    ready = "ready" if health.ready else "live, NOT ready"
    st.markdown(
        f"**Server** `{client.url}` ({client.protocol.value}) is {ready}. {summary_line(states)}."
    )
    st.table(pd.DataFrame(state_rows(states)), hide_index=True, border="horizontal")

    names = sorted({s.name for s in states})
    left, middle, right = st.columns([3, 1, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Model", names, key="model-choice")
    if middle.button("Load", key="load", width="stretch") and chosen:
        try:
            client.load_model(chosen)
            st.session_state["model-message"] = ("success", f"Loaded {chosen}.")
        except ClientError as exc:
            st.session_state["model-message"] = ("error", str(exc))
        st.rerun(scope="fragment")
    if right.button("Unload", key="unload", width="stretch") and chosen:
        try:
            users = ensembles_using(chosen, ready_configs(client, states))
            client.unload_model(chosen)
            also = f" Triton takes down with it what runs it: {', '.join(users)}." if users else ""
            st.session_state["model-message"] = ("success", f"Unloaded {chosen}.{also}")
        except PermissionDeniedError as exc:  # its message says to set the key
            st.session_state["model-message"] = ("error", str(exc))
        except ClientError as exc:
            st.session_state["model-message"] = (
                "error",
                f"{exc} (load/unload needs the server in --model-control explicit, the default)",
            )
        st.rerun(scope="fragment")
    kind, message = st.session_state.get("model-message", ("", ""))
    if kind == "success":
        st.success(message)
    elif kind == "error":
        st.error(message)


def ready_configs(client: TritonHFClient, states: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """The configs of the ready models (one that cannot be read is left out)."""
    configs = {}
    for state in states:
        if state.ready:
            with suppress(ClientError):
                configs[state.name] = client.model_config(state.name)
    return configs


def metrics_section(config: ConsoleConfig) -> None:
    """Per-model request rate, latency and queue time from two scrapes of Triton's metrics."""
    try:
        previous: Scrape | None = st.session_state.get("scrape")
        if previous is None:
            previous = scrape(config.metrics_url, timeout_s=config.timeout_s)
            time.sleep(1.0)  # a rate needs two scrapes
        current = scrape(config.metrics_url, timeout_s=config.timeout_s)
    except ClientError as exc:
        st.error(str(exc))
        return
    st.session_state["scrape"] = current
    rates = model_rates(previous, current)
    seconds = current.at - previous.at
    st.caption(f"From `{config.metrics_url}`, over the last {seconds:.1f} s.")
    if not any(metric.startswith("nv_") for metric, _ in current.samples):
        st.warning(
            f"`{config.metrics_url}` serves no Triton metrics (no `nv_*` series): is it "
            "Triton's metrics port (`--metrics-url`, default http://127.0.0.1:8002/metrics)?"
        )
        return
    if not rates:
        st.info("Triton reports no per-model metrics yet (no model loaded?).")
        return
    st.table(pd.DataFrame(rate_rows(rates)), hide_index=True, border="horizontal")
    history = append_history(st.session_state.get("history", []), rates, at=time.time())
    st.session_state["history"] = history
    charts = st.columns(3)
    for chart, column in zip(charts, ("requests/s", "latency ms", "queue ms"), strict=True):
        series = chart_table(history, column)
        frame = pd.DataFrame(series)
        frame.index = [datetime.fromtimestamp(t) for t in frame.index]
        chart.markdown(f"**{column}**")
        chart.line_chart(frame, height=220)


def reports_section(config: ConsoleConfig) -> None:
    """The latest benchmark report (markdown and plots), and the older ones on demand."""
    if config.bench_dir.exists() and not config.bench_dir.is_dir():
        st.warning(f"--bench-dir `{config.bench_dir}` is a file: pass the folder of the reports.")
        return
    reports = find_reports(config.bench_dir)
    if not reports:
        st.info(
            f"No benchmark reports in `{config.bench_dir}` yet: `tritonhf bench --out "
            f"{config.bench_dir}` writes one (or pass --bench-dir)."
        )
        return
    titles = [f"{r.title} ({datetime.fromtimestamp(r.modified):%Y-%m-%d %H:%M})" for r in reports]
    index = st.selectbox(
        "Report", range(len(reports)), format_func=lambda i: titles[i], key="report"
    )
    report = reports[index or 0]
    for path in report.markdown:
        try:
            text, _ = strip_local_images(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:  # removed or unreadable since the listing
            st.warning(f"`{path}` could not be read: {exc}")
            continue
        st.markdown(text)
    for image in report.images:
        try:
            with Image.open(image) as picture:
                picture.load()  # a plot cut short fails here, not as a blank area
            st.image(str(image), caption=image.name)
        except (OSError, ValueError, SyntaxError) as exc:  # cut short, not an image at all
            reason = (
                "cut short"
                if isinstance(exc, OSError) and "truncated" in str(exc)
                else ("not an image this page can show")
            )
            st.warning(f"`{image}` could not be shown: {reason}")
    for table in report.tables:
        with st.expander(f"{table.name} (raw data)"):
            try:
                st.dataframe(pd.read_csv(table), hide_index=True)
            except (OSError, ValueError) as exc:  # empty, cut short, not CSV
                st.warning(f"`{table}` could not be read as CSV: {exc}")


def main(argv: list[str]) -> None:
    """The page."""
    config = _config(argv)
    st.set_page_config(page_title="tritonhf ops console", page_icon="🛠️", layout="wide")
    st.title("tritonhf ops console")
    with st.sidebar:
        st.markdown(
            f"**Triton** `{config.url}` ({config.protocol.value})  \n"
            f"**metrics** `{config.metrics_url}`  \n**reports** `{config.bench_dir}`"
        )
        interval = st.slider("Refresh every (s)", 2, 30, 5, key="interval")
    client = _client(config.url, config.protocol.value, config.timeout_s)

    # Fragments refresh on their own timer without re-running the whole page.
    @st.fragment(run_every=interval)
    def models_fragment() -> None:
        repository_section(config, client)

    @st.fragment(run_every=interval)
    def metrics_fragment() -> None:
        metrics_section(config)

    st.header("Models")
    models_fragment()
    st.header("Live metrics")
    metrics_fragment()
    st.header("Benchmark reports")
    reports_section(config)


main(sys.argv[1:])
