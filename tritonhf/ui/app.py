"""The Gradio demo: widgets wired to `DemoService` and the formatting in `tritonhf.ui.logic`.

Every callback catches what went wrong and shows `error_markdown`, so the page never shows a
stack trace. Imported only by `tritonhf ui` (Gradio is heavy).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import gradio as gr
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tritonhf.errors import ClientError, ConfigError
from tritonhf.ui.logic import (
    RESTRICTED_INDEX,
    confidences,
    error_markdown,
    health_markdown,
    heatmap_html,
    hit_rows,
    model_rows,
    probabilities_markdown,
    similarity_matrix,
)
from tritonhf.ui.service import DemoConfig, DemoService

log = logging.getLogger(__name__)

EXAMPLE_SENTENCES = "\n".join(
    (
        "The battery lasts a full workday.",
        "I can use this laptop all day without charging it.",
        "The central bank left interest rates unchanged.",
        "How do I reverse a list in Python?",
    )
)
EXAMPLE_QUERY = "my package has not arrived yet"
EXAMPLE_REVIEW = "Great service, friendly staff, I will come back!"
MODEL_HEADERS = ["model", "version", "state", "reason"]
STATUS_EVERY_S = 15.0
"""How often an open page refreshes the status panel (and finds newly served models)."""
CSS = """
.tritonhf-heatmap-box { max-width: 100%; overflow-x: auto; }
.tritonhf-heatmap { border-collapse: collapse; font-size: 0.9em; }
.tritonhf-heatmap caption { text-align: left; padding-bottom: 4px; }
.tritonhf-heatmap th, .tritonhf-heatmap td { padding: 4px 8px; border: 1px solid #e5e7eb; }
.tritonhf-heatmap td { text-align: center; font-variant-numeric: tabular-nums; }
.tritonhf-heatmap th.row { text-align: left; font-weight: normal; white-space: nowrap; }
"""


def _failed(exc: BaseException, action: str) -> str:
    # Typed client errors are expected (server down, model missing): no traceback in the log.
    if isinstance(exc, ClientError):
        log.info("%s failed: %s", action, exc)
    else:
        log.exception("%s failed unexpectedly", action)
    return error_markdown(exc)


def build_demo(service: DemoService) -> gr.Blocks:  # one layout, read top-down
    """The demo's page: status panel, embeddings tab, classification tab."""
    config = service.config

    def status(protocol: str, classifier: str | None) -> tuple[Any, ...]:
        """The status panel, and the models the dropdowns offer.

        Run on load, on Refresh, on a protocol change and every `STATUS_EVERY_S`. It never
        resets a choice the user made; while the server is down it leaves the dropdowns alone,
        and once a classifier is served it fills an empty classifier choice, or replaces a
        ``--classifier`` that is not among those served.
        """
        client = service.client(protocol)
        health = client.health()
        headline, rows = health_markdown(health), [["-", "-", "-", "-"]]
        embed_update, cls_update = gr.update(), gr.update()
        if health.live:
            try:
                states = service.states(protocol)
                if states is None:  # the server restricts its index to its admin key
                    headline += "\n\n" + RESTRICTED_INDEX
                    states = client.loaded_models()
                rows = model_rows(states) or rows
                served = service.served(protocol)
                embed_update = gr.update(choices=sorted({config.model, *served.embedders}))
                if classifier == config.classifier:  # the command line's, not the user's
                    classifier = None
                chosen = classifier or service.default_classifier(served)
                cls_update = gr.update(
                    choices=sorted({*served.classifiers, *([chosen] if chosen else [])}),
                    value=chosen,
                )
            except Exception as exc:  # noqa: BLE001  # shown in the panel, never raised
                headline += "\n\n" + _failed(exc, "status")
        return headline, rows, embed_update, cls_update

    def compare(text: str, protocol: str, model: str) -> tuple[str, str, dict[str, str]]:
        try:
            done = service.compare(text, protocol=protocol, model=model)
        except Exception as exc:  # noqa: BLE001  # shown on the page, never raised
            return "", _failed(exc, "compare"), {}
        table = heatmap_html(done.texts, similarity_matrix(done.embeddings))
        return table, done.info.markdown(), _last(done.info.request_id, model, protocol)

    def search(query: str, k: float, protocol: str, model: str) -> tuple[Any, str, Any]:
        try:
            done = service.search(query, k=int(k), protocol=protocol, model=model)
        except Exception as exc:  # noqa: BLE001  # shown on the page, never raised
            return [], _failed(exc, "search"), {}
        return (
            hit_rows(done.hits),
            done.info.markdown(),
            _last(done.info.request_id, model, protocol),
        )

    def classify(text: str, protocol: str, model: str | None) -> tuple[Any, str, Any, Any]:
        try:
            done = service.classify(text, protocol=protocol, model=model)
        except Exception as exc:  # noqa: BLE001  # shown on the page, never raised
            return None, _failed(exc, "classify"), {}, gr.update()
        return (
            confidences(done.result.top),
            probabilities_markdown(done.result.top) + " · " + done.info.markdown(),
            _last(done.info.request_id, done.info.model, protocol),
            gr.update(choices=list(done.labels), value=None),  # a new result, no correction yet
        )

    def feedback(
        last: dict[str, str], positive: bool, corrected: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """Rate the last result once; a thumbs-up carries no corrected label."""
        try:
            service.feedback(
                request_id=last.get("request_id", ""),
                positive=positive,
                corrected_label=None if positive else corrected,
                model=last.get("model", ""),
                protocol=last.get("protocol", config.protocol.value),
                rated=last.get("rated"),
            )
        except Exception as exc:  # noqa: BLE001  # shown on the page, never raised
            return _failed(exc, "feedback"), last
        verdict = "thumbs up" if positive else "thumbs down"
        fix = f", corrected label `{corrected}`" if corrected and not positive else ""
        message = f"Thanks! Recorded {verdict}{fix} for request `{last['request_id']}`."
        return message, {**last, "rated": verdict}

    demo: gr.Blocks
    with gr.Blocks(title="tritonhf demo", analytics_enabled=False) as demo:
        gr.Markdown(
            "# tritonhf demo\nSentence embeddings and classification served by NVIDIA Triton, "
            "through the `tritonhf` client."
        )
        with gr.Accordion("Server status", open=True, elem_id="status-panel"):
            with gr.Row():
                protocol = gr.Radio(
                    ["grpc", "http"],
                    value=config.protocol.value,
                    label="Protocol",
                    elem_id="protocol",
                    scale=1,
                )
                refresh = gr.Button("Refresh status", scale=0, elem_id="refresh")
            headline = gr.Markdown(elem_id="health")
            models = gr.Dataframe(
                headers=MODEL_HEADERS,
                interactive=False,
                elem_id="models",
                max_height=240,
                label="Models on the server",
                show_label=False,
            )

        with gr.Tabs():
            with gr.Tab("Embeddings", elem_id="tab-embeddings"):
                embed_model = gr.Dropdown(
                    [config.model],
                    value=config.model,
                    allow_custom_value=True,
                    label="Embedding model",
                    elem_id="embed-model",
                )
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("### Compare sentences")
                        sentences = gr.Textbox(
                            value=EXAMPLE_SENTENCES,
                            lines=5,
                            max_lines=8,
                            label="Sentences, one per line",
                            elem_id="sentences",
                        )
                        compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                        heatmap = gr.HTML(elem_id="heatmap")
                        compare_info = gr.Markdown(elem_id="compare-info")
                    with gr.Column():
                        gr.Markdown("### Semantic search over the built-in corpus")
                        query = gr.Textbox(value=EXAMPLE_QUERY, label="Query", elem_id="query")
                        top_k = gr.Slider(1, 20, value=5, step=1, label="top-k")
                        search_button = gr.Button("Search", variant="primary", elem_id="search")
                        hits = gr.Dataframe(
                            headers=["rank", "score", "sentence"],
                            interactive=False,
                            wrap=True,
                            column_widths=["12%", "14%", "74%"],
                            elem_id="hits",
                            label="Search results",
                            show_label=False,
                        )
                        search_info = gr.Markdown(elem_id="search-info")
                gr.Markdown("Was the last result useful? (typing in a box starts over)")
                with gr.Row():
                    embed_up = gr.Button("✓ Thumbs up", elem_id="embed-up", scale=0, min_width=190)
                    embed_down = gr.Button(
                        "✗ Thumbs down", elem_id="embed-down", scale=0, min_width=190
                    )
                embed_feedback = gr.Markdown(elem_id="embed-feedback")
                embed_last = gr.State({})

            with gr.Tab("Classification", elem_id="tab-classification"):
                cls_model = gr.Dropdown(
                    [c for c in [config.classifier] if c],
                    value=config.classifier,
                    allow_custom_value=True,
                    label="Classifier",
                    elem_id="cls-model",
                )
                review = gr.Textbox(value=EXAMPLE_REVIEW, lines=3, label="Text", elem_id="review")
                classify_button = gr.Button("Classify", variant="primary", elem_id="classify")
                scores = gr.Label(label="Label and confidence per class", elem_id="scores")
                classify_info = gr.Markdown(elem_id="classify-info")
                gr.Markdown("Was the prediction right? Optionally give the correct label.")
                with gr.Row():
                    corrected = gr.Dropdown(
                        [], value=None, label="Correct label (optional)", elem_id="corrected"
                    )
                    cls_up = gr.Button("✓ Thumbs up", elem_id="cls-up", scale=0, min_width=190)
                    cls_down = gr.Button(
                        "✗ Thumbs down", elem_id="cls-down", scale=0, min_width=190
                    )
                cls_feedback = gr.Markdown(elem_id="cls-feedback")
                cls_last = gr.State({})

        status_inputs, status_outputs = (
            [protocol, cls_model],
            [headline, models, embed_model, cls_model],
        )
        demo.load(status, status_inputs, status_outputs)
        refresh.click(status, status_inputs, status_outputs)
        protocol.change(status, status_inputs, status_outputs)
        gr.Timer(STATUS_EVERY_S).tick(status, status_inputs, status_outputs)
        compare_button.click(
            compare, [sentences, protocol, embed_model], [heatmap, compare_info, embed_last]
        )
        search_button.click(
            search, [query, top_k, protocol, embed_model], [hits, search_info, embed_last]
        )
        query.submit(search, [query, top_k, protocol, embed_model], [hits, search_info, embed_last])
        classify_button.click(
            classify, [review, protocol, cls_model], [scores, classify_info, cls_last, corrected]
        )
        # Typing in a box makes the last result another text's: rating it now would mislead.
        for edited in (sentences, query):
            edited.input(lambda: ("", {}), None, [embed_feedback, embed_last])
        for changed in (review, cls_model):
            changed.input(lambda: ("", {}), None, [cls_feedback, cls_last])
        embed_rated, cls_rated = [embed_feedback, embed_last], [cls_feedback, cls_last]
        embed_up.click(lambda last: feedback(last, True), [embed_last], embed_rated)
        embed_down.click(lambda last: feedback(last, False), [embed_last], embed_rated)
        cls_up.click(lambda last: feedback(last, True), [cls_last], cls_rated)
        cls_down.click(lambda last, c: feedback(last, False, c), [cls_last, corrected], cls_rated)
    return demo


def _last(request_id: str, model: str, protocol: str) -> dict[str, str]:
    return {"request_id": request_id, "model": model, "protocol": protocol}


def _metrics_endpoint(registry: CollectorRegistry) -> Any:
    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def serve(config: DemoConfig) -> None:
    """Run the demo until Ctrl-C, with the client-side metrics at ``/metrics`` on its port."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes
    service = DemoService(config)
    demo = build_demo(service)
    try:
        try:
            app, local_url, share_url = demo.launch(
                server_name=config.host,
                server_port=config.port,
                share=config.share,
                prevent_thread_lock=True,
                ssr_mode=False,
                footer_links=[],
                quiet=True,
                css=CSS,
            )
        except OSError as exc:  # the port was taken after `tritonhf ui` checked it
            raise ConfigError(
                f"cannot listen on {config.host}:{config.port} ({exc}); pick another --port"
            ) from None
        threading.Thread(target=service.warm, name="warm-search-index", daemon=True).start()
        # First in the routing table, so Gradio's own routes never shadow it.
        app.router.routes.insert(0, Route("/metrics", _metrics_endpoint(service.registry)))
        print(
            f"tritonhf demo on {local_url} (metrics at {local_url.rstrip('/')}/metrics)"
            + (f", public link {share_url}" if share_url else "")
            + "; Ctrl-C stops",
            flush=True,
        )
        demo.block_thread()
    finally:
        demo.close()
        service.close()
