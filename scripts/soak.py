"""Soak test: a long bounded closed loop against a tritonhf server it starts, with a table.

    .venv/bin/python scripts/soak.py --requests 20000 --concurrency 16

It exports nothing: it starts a server on --repo (default model_repository/) on free ports,
so it measures that server's own memory. Exit code 1 on any error or when RSS grows
more than --max-rss-growth from the first to the last quarter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonhf import data
from tritonhf.client import TritonHFClient
from tritonhf.loadgen import soak
from tritonhf.server.launcher import ServerConfig, TritonServer
from tritonhf.server.ports import free_ports


def main() -> int:
    """Parse flags, run the soak, print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1000, help="unmeasured requests first")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    args = parser.parse_args()

    http, grpc, metrics = free_ports(3)
    config = ServerConfig(repo=args.repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
    with TritonServer(config, log_path=Path("artifacts/soak-server.log")) as server:
        if server.pid is None:
            raise RuntimeError("the server did not start")
        url = config.grpc_url if args.protocol == "grpc" else config.http_url
        with TritonHFClient(url, protocol=args.protocol, model=args.model) as client:
            report = soak(
                client,
                data.sentences(),
                requests=args.requests,
                concurrency=args.concurrency,
                server_pid=server.pid,
                warmup=args.warmup,
            )
    print(f"soak: {args.requests:,} requests at concurrency {args.concurrency} ({args.protocol})")
    print(report.table())
    ok = report.load.error_count == 0 and report.rss_growth <= args.max_rss_growth
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
