"""Dask: the cluster a job runs on, and mapping batches over it.

The embedded default is a ``LocalCluster`` of single-threaded worker processes, one per core,
with BLAS and OpenMP pinned to one thread each (oversubscribed small fits run tens of times
slower). ``compute.scheduler`` points the same job at an existing cluster instead. This is the
only module that imports ``dask.distributed``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from distributed import Client, LocalCluster, WorkerPlugin, as_completed
from distributed.utils import silence_logging_cmgr

from manymodels.config import ComputeConfig
from manymodels.errors import ManyModelsError

__all__ = [
    "PendingCluster",
    "PinThreads",
    "cluster",
    "cluster_in_background",
    "map_batches",
    "worker_count",
]

Batch = TypeVar("Batch")

# What every task imports. MLflow is added only for jobs whose workers talk to a tracking server
# (see ``worker_modules``): importing it costs each worker about two seconds of CPU.
_TASK_MODULES = ("manymodels.tasks", "manymodels.artifacts.sinks")
MLFLOW_MODULES = ("manymodels.artifacts.entity_folder", "mlflow.pyfunc",
                  "mlflow.store.artifact.local_artifact_repo")  # fmt: skip
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")  # fmt: skip


class PinThreads(WorkerPlugin):
    """Prepares every worker, on any cluster: native thread pools limited to one thread, and
    the task modules imported up front (while the driver is still opening the tracking store)
    rather than inside the first task."""

    name = "manymodels-worker-setup"

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.preload = tuple(dict.fromkeys([*_TASK_MODULES, *preload]))

    def setup(self, worker: Any) -> None:
        for variable in _THREAD_VARIABLES:
            os.environ[variable] = "1"
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        # Synchronously: importing in a background thread while a task imports the same
        # modules can trip Python's import deadlock detection and fail that task.
        for module in self.preload:
            with contextlib.suppress(Exception):
                importlib.import_module(module)


@contextlib.contextmanager
def cluster(compute: ComputeConfig, preload: Sequence[str] = ()) -> Iterator[Client]:
    """A Dask client on the configured scheduler, or on a new LocalCluster.

    ``preload`` names modules every worker imports while it starts, beyond the task modules.

    Raises:
        ManyModelsError: the scheduler address cannot be reached.
    """
    # Clients are closed explicitly rather than used as context managers: entering one sets a
    # context variable, which must be reset in the same thread, and a PendingCluster starts the
    # cluster in one thread and closes it in another.
    if compute.scheduler:
        try:
            client = Client(compute.scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ManyModelsError(
                f"compute.scheduler: cannot reach the Dask scheduler at {compute.scheduler} "
                f"({exc}). Hint: start it with 'dask scheduler', or remove compute.scheduler "
                "to use a local cluster."
            ) from None
        try:
            client.register_plugin(PinThreads(preload))
            yield client
        finally:
            client.close()
        return
    with _QUIET_LOGS.while_running():
        yield from _local_cluster(compute, preload)


def _local_cluster(compute: ComputeConfig, preload: Sequence[str]) -> Iterator[Client]:
    environment = {variable: "1" for variable in _THREAD_VARIABLES}
    local = LocalCluster(
        n_workers=compute.n_workers or os.cpu_count() or 1,
        threads_per_worker=compute.threads_per_worker,
        processes=True,
        memory_limit=compute.memory_limit,
        # A free port: a fixed one clashes with any other cluster on the machine.
        dashboard_address=":0",
        # Workers log heartbeat errors when a job stops early; they are noise to a user.
        silence_logs=logging.CRITICAL,
        env=environment,
    )
    try:
        client = Client(local, set_as_default=False)
        try:
            client.register_plugin(PinThreads(preload))
            yield client
        finally:
            client.close()
    finally:
        local.close()


class _QuietLogs:
    """Dask's log output in this process, silenced while any local cluster lives.

    Each LocalCluster silences it too, but restores the level it found when it closes: a
    cluster that shuts down in the background after the next job's cluster started would
    turn the logs back on in the middle of that job.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clusters = 0
        self._restore = contextlib.ExitStack()

    @contextlib.contextmanager
    def while_running(self) -> Iterator[None]:
        with self._lock:
            if self._clusters == 0:
                self._restore.enter_context(silence_logging_cmgr(logging.CRITICAL))
            self._clusters += 1
        try:
            yield
        finally:
            with self._lock:
                self._clusters -= 1
                if self._clusters == 0:
                    self._restore.close()


_QUIET_LOGS = _QuietLogs()


class PendingCluster:
    """A cluster that starts in a background thread while the driver does other set-up work
    (opening the tracking store, listing the registry), which takes about as long."""

    def __init__(self, compute: ComputeConfig, preload: Sequence[str] = ()) -> None:
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None
        self._error: BaseException | None = None
        self._closer: threading.Thread | None = None
        self._thread = threading.Thread(target=self._start, args=(compute, preload), daemon=True)
        self._thread.start()

    def _start(self, compute: ComputeConfig, preload: Sequence[str]) -> None:
        try:
            self._client = self._stack.enter_context(cluster(compute, preload))
        except BaseException as exc:  # re-raised in the thread that asks for the client
            self._error = exc

    def client(self) -> Client:
        """The client, once the cluster is up.

        Raises:
            ManyModelsError: the scheduler cannot be reached.
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._client is not None
        return self._client

    def release(self) -> None:
        """Start shutting the cluster down in the background (the driver has more to do)."""
        if self._closer is None:
            self._closer = threading.Thread(target=self._shut_down, daemon=True)
            _SHUTTING_DOWN.add(self._closer)
            self._closer.start()

    def _shut_down(self) -> None:
        try:
            self._thread.join()
            self._stack.close()
        finally:
            _SHUTTING_DOWN.discard(threading.current_thread())


@contextlib.contextmanager
def cluster_in_background(
    compute: ComputeConfig, preload: Sequence[str] = ()
) -> Iterator[PendingCluster]:
    """Start the cluster now, use it later with ``pending.client()``.

    On exit the cluster shuts down in the background: a job's results are safe by then, and
    stopping worker processes takes a few tenths of a second that the caller need not wait
    for. The interpreter waits for every shutdown still running before it exits.
    """
    pending = PendingCluster(compute, preload)
    try:
        yield pending
    finally:
        pending.release()


# Shutdowns still running; joined when the interpreter exits (registered after distributed's
# own exit hook, so it runs first and that hook finds the clusters closed).
_SHUTTING_DOWN: set[threading.Thread] = set()


@atexit.register
def _finish_shutdowns() -> None:
    for thread in list(_SHUTTING_DOWN):
        thread.join(timeout=60)


def worker_count(client: Client) -> int:
    """Threads available across the cluster (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def map_batches(
    client: Client,
    function: Callable[..., Any],
    batches: Sequence[Batch],
    *args: Any,
    name: str,
    retries: int = 1,
) -> Iterator[tuple[Batch, Any]]:
    """Run ``function(batch, *args)`` for every batch and yield results as they complete.

    Stopping the iteration early cancels the batches still queued or running.

    A task that raises (for example after its worker died too often) yields the exception in
    place of a result, so the caller can record its batch as failed and go on. Results are
    released as soon as they are yielded, so Dask never recomputes a task whose side effects
    were already consumed.
    """
    # Arguments shared by every task (the job's settings, champions) travel once per worker.
    shared = [client.scatter(arg, broadcast=True, hash=False) for arg in args]
    futures = {
        client.submit(
            function, batch, *shared, key=f"{name}-{index}", pure=False, retries=retries
        ): batch
        for index, batch in enumerate(batches)
    }
    try:
        for future in as_completed(list(futures), loop=client.loop):
            batch = futures.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # the task itself failed; the caller records its entities
                outcome = exc
            future.release()
            yield batch, outcome
    finally:
        # Reached early when the caller stops (failure budget spent, interrupted).
        if futures:
            client.cancel(list(futures))
