"""``manymodels serve``: latency of a cached and of an uncached model, and requests per second.

Trains ``--entities`` generated OJ series (``auto``: every entity gets its own winner among
the statistical and regression templates, so the models loaded are of every kind), starts the
real server process (``manymodels serve``, one process, cache as large as the panel) and calls
it over HTTP with keep-alive connections, each request carrying the entity's 8 planned weeks of
price and deal:

* **uncached**: the first request of each entity, which loads its model from the store;
* **cached**: the two requests of the same entity that follow it, its model now loaded;
* **throughput**: ``--clients`` threads sending cached requests for ``--seconds``. The clients
  run on the same 2 cores as the server, so this understates what the server alone would do.

Targets (issue 12): p50 at most 20 ms cached and 300 ms uncached. Run from the repository root::

    python benchmarks/serve.py                 # 200 entities, about two minutes
    python benchmarks/serve.py --entities 60   # quicker
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):  # fmt: skip
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

CACHED_TARGET_MS = 20.0
UNCACHED_TARGET_MS = 300.0
HORIZON = 8


def main() -> None:
    args = _arguments()
    root = Path(tempfile.mkdtemp(prefix="manymodels-bench-serve-"))
    try:
        config_path, bodies = _train(root, args.entities)
        port = _free_port()
        with _server(config_path, port, args.entities, root / "serve.log"):
            results = _measure(port, bodies, args.clients, args.seconds)
        _print(results, args)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200, help="series to train and serve")
    parser.add_argument("--clients", type=int, default=4, help="threads of the throughput run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--keep", action="store_true", help="keep the data and the MLflow store")
    return parser.parse_args()


def _train(root: Path, n_entities: int) -> tuple[Path, list[bytes]]:
    """Train the panel; the config file, and one request body per entity."""
    import yaml

    import manymodels
    from manymodels.data import write_partitioned
    from manymodels.datasets import oj_sales

    frame = oj_sales(n_entities=n_entities, n_weeks=104, seed=7, future_weeks=HORIZON,
                     short_share=0.0, intermittent_share=0.0)  # fmt: skip
    write_partitioned(frame, str(root / "data"), ["store", "brand"], basename="part")
    raw = {
        "horizon": HORIZON,
        "data": {"path": str(root / "data"), "partition_by": ["store", "brand"],
                 "time_col": "week", "target_col": "sales", "exog_cols": ["price", "deal"],
                 "freq": "W-SUN"},
        "model": {"template": "auto"},
        "compute": {"n_workers": 2},
        "tracking": {"experiment": "bench-serve", "model_prefix": "bench"},
        "work_dir": str(root / "work"),
    }  # fmt: skip
    print(f"training {n_entities} entities ...", file=sys.stderr)
    started = time.perf_counter()
    result = manymodels.train(manymodels.config_from_dict(raw))
    print(f"trained {result.entities['status'].eq('ok').sum()} in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    trained = {(str(store), str(brand)) for store, brand, status in
               result.entities[["store", "brand", "status"]].itertuples(index=False)
               if status == "ok"}  # fmt: skip
    future = frame[frame["sales"].isna()]
    bodies = []
    for (store, brand), rows in future.groupby(["store", "brand"], sort=True):
        if (str(store), str(brand)) not in trained:  # a failed entity has no model to serve
            continue
        rows_json = [{"week": week.isoformat(), "price": float(price), "deal": int(deal)}
                     for week, price, deal in zip(rows["week"], rows["price"], rows["deal"],
                                                  strict=True)]  # fmt: skip
        request = {"keys": {"store": int(store), "brand": brand}, "future": rows_json}
        bodies.append(json.dumps(request).encode())
    return path, bodies


class _server:
    """The ``manymodels serve`` process, from start to a ready ``/health`` to its end."""

    def __init__(self, config: Path, port: int, cache_size: int, log: Path) -> None:
        self.command = [sys.executable, "-m", "manymodels.cli", "serve", "-c", str(config),
                        "--port", str(port), "--cache-size", str(cache_size)]  # fmt: skip
        self.port, self.log = port, log

    def __enter__(self) -> None:
        print("starting manymodels serve ...", file=sys.stderr)
        self.out = open(self.log, "w")  # noqa: SIM115 - closed in __exit__
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command, stdout=self.out, stderr=subprocess.STDOUT)
        while time.perf_counter() - started < 120:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                _Client(self.port).get("/health")
                print(f"ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the server did not start in 120 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.out.close()


class _Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> Any:
        self.connection.request("GET", path)
        return json.loads(self.connection.getresponse().read())

    def post(self, body: bytes) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        self.connection.request("POST", "/forecast", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer}")
        return elapsed, answer


def _measure(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """Each entity's first request (uncached), then two more of it at once (cached): pairs
    measured side by side, so that a busy moment of the shared machine weighs on both."""
    client = _Client(port)
    uncached, cached = [], []
    for body in bodies:
        elapsed, answer = client.post(body)
        if answer["cached"]:
            raise RuntimeError("a first request found its model already loaded")
        uncached.append(elapsed)
        for _repeat in range(2):
            elapsed, answer = client.post(body)
            if not answer["cached"]:
                raise RuntimeError("a loaded model was not found in the cache")
            cached.append(elapsed)
    return {"uncached": uncached, "cached": cached,
            "throughput": _throughput(port, bodies, clients, seconds)}  # fmt: skip


def _throughput(port: int, bodies: list[bytes], clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def hammer(index: int) -> None:
        client = _Client(port)
        position = index
        while time.perf_counter() < stop:
            client.post(bodies[position % len(bodies)])
            counts[index] += 1
            position += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=hammer, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _print(results: dict[str, Any], args: argparse.Namespace) -> None:
    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0

    cached, uncached = results["cached"], results["uncached"]
    rows = [
        ("cached model", p(cached, 50), p(cached, 90), len(cached), CACHED_TARGET_MS),
        ("uncached model", p(uncached, 50), p(uncached, 90), len(uncached), UNCACHED_TARGET_MS),
    ]
    print(f"manymodels serve, {args.entities} entities (auto), horizon {HORIZON}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"{'requests':<16}{'p50 ms':>9}{'p90 ms':>9}{'n':>6}{'target p50':>12}{'met':>5}")
    for label, p50, p90, count, target in rows:
        met = "yes" if p50 <= target else "no"
        print(f"{label:<16}{p50:>9.1f}{p90:>9.1f}{count:>6}{target:>10.0f} ms{met:>5}")
    print(f"{'throughput':<16}{results['throughput']:>9.0f} requests/s, cached, "
          f"{args.clients} client threads on the same cores, {args.seconds:.0f} s")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
