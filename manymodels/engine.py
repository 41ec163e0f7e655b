"""Dask: the cluster a job runs on, and mapping batches over it.

The embedded default is a ``LocalCluster`` of single-threaded worker processes, one per core,
with BLAS and OpenMP pinned to one thread each (oversubscribed small fits run tens of times
slower). ``compute.scheduler`` points the same job at an existing cluster instead. This is the
only module that imports ``dask.distributed``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dask.config
from distributed import Client, Future, LocalCluster, NannyPlugin, WorkerPlugin, as_completed
from distributed.client import FutureCancelledError
from distributed.core import Status
from distributed.scheduler import KilledWorker
from distributed.utils import silence_logging_cmgr

from manymodels.config import ComputeConfig
from manymodels.crashes import (
    EXIT_TOPIC,
    MEMORY_TOPIC,
    UNKNOWN_DEATH,
    WorkerCrash,
    describe_death,
    run_guarded,
)
from manymodels.errors import ManyModelsError

__all__ = [
    "PendingCluster",
    "PinThreads",
    "ReportExits",
    "cluster",
    "cluster_in_background",
    "full_size",
    "halves",
    "Kept",
    "map_batches",
    "release",
    "submit_kept",
    "summaries",
    "worker_count",
]

logger = logging.getLogger(__name__)

Batch = TypeVar("Batch")
Item = TypeVar("Item")

# What every task imports. MLflow is added only for jobs whose workers talk to a tracking server
# (see ``worker_modules``): importing it costs each worker about two seconds of CPU.
_TASK_MODULES = ("manymodels.tasks", "manymodels.artifacts.sinks")
MLFLOW_MODULES = ("manymodels.artifacts.entity_folder", "mlflow.pyfunc",
                  "mlflow.store.artifact.local_artifact_repo")  # fmt: skip
_LOST_WORKER_TIMEOUT = "1h"
# Copying the shared task arguments to every worker normally takes milliseconds; past this, the
# job goes on without the copies rather than waiting on a cluster that is changing.
_REPLICATE_TIMEOUT = "60s"
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


class ReportExits(NannyPlugin):
    """Makes every nanny report the exit code of its worker process as a scheduler event, so
    that an entity that kills its process fails with the reason (Dask logs it on the nanny's
    machine only)."""

    name = "manymodels-exit-reports"

    def setup(self, nanny: Any) -> None:
        if getattr(nanny, "_manymodels_reports_exits", False):  # registered by an earlier job
            return
        nanny._manymodels_reports_exits = True
        forward = nanny._on_worker_exit_sync

        def report(exitcode: int) -> None:
            # Only deaths while the nanny runs: one that is closing stops its worker itself,
            # and the scheduler may be gone already. Never in the way of the nanny's own
            # handling, which restarts the worker.
            if nanny.status == Status.running:
                with contextlib.suppress(Exception):
                    message = {"worker": nanny.worker_address, "exitcode": exitcode}
                    nanny.log_event(EXIT_TOPIC, message)
            forward(exitcode)

        # The nanny hands this callback to each worker process it starts; the one running now
        # already holds the old one.
        nanny._on_worker_exit_sync = report
        if getattr(nanny, "process", None) is not None:
            nanny.process.on_exit = report


@contextlib.contextmanager
def cluster(
    compute: ComputeConfig, preload: Sequence[str] = (), unused: threading.Event | None = None,
    dashboard: bool = True, start: int | None = None,
) -> Iterator[Client]:  # fmt: skip
    """A Dask client on the configured scheduler, or on a new LocalCluster.

    ``preload`` names modules every worker imports while it starts, beyond the task modules.
    ``unused`` is set by a caller that learns, while the cluster starts, that it will run
    nothing on it: the workers are then not set up (no imports, no plugins). ``dashboard``
    serves a new LocalCluster's Dask dashboard pages (with bokeh installed): setting them up
    costs the driver about 0.3 s while the workers start, so quiet jobs go without. ``start``
    starts a new LocalCluster with that many of its workers (at most :func:`full_size`), for a
    caller that adds the others with :meth:`PendingCluster.client` once it knows its work.

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
            _register_plugins(client, preload, unused)
            yield client
        finally:
            client.close()
        return
    with _QUIET_LOGS.while_running():
        yield from _local_cluster(compute, preload, unused, dashboard, start)


def full_size(compute: ComputeConfig) -> int:
    """How many worker processes a new LocalCluster of ``compute`` has: one per core unless
    ``compute.n_workers`` says otherwise."""
    return compute.n_workers or os.cpu_count() or 1


def _register_plugins(
    client: Client, preload: Sequence[str], unused: threading.Event | None = None
) -> None:
    if unused is not None and unused.is_set():
        return
    client.register_plugin(PinThreads(preload))
    # Exit codes only make a crash's message precise: a cluster whose nannies cannot take the
    # plugin (or that has none) still runs the job.
    with contextlib.suppress(Exception):
        client.register_plugin(ReportExits())


def _local_cluster(
    compute: ComputeConfig, preload: Sequence[str], unused: threading.Event | None = None,
    dashboard: bool = True, start: int | None = None,
) -> Iterator[Client]:  # fmt: skip
    environment = {variable: "1" for variable in _THREAD_VARIABLES}
    # A nanny restarts a worker whose process died, but the cluster object closes any nanny
    # whose worker is missing when this timeout (15 s by default) ends: an entity that kills
    # worker after worker would shrink the cluster to nothing and stall the job. Read when a
    # worker goes, so it is set for the process rather than around the cluster's start.
    dask.config.set({"distributed.deploy.lost-worker-timeout": _LOST_WORKER_TIMEOUT})
    local = LocalCluster(
        n_workers=min(start or full_size(compute), full_size(compute)),
        threads_per_worker=compute.threads_per_worker,
        processes=True,
        memory_limit=compute.memory_limit,
        # A free port: a fixed one clashes with any other cluster on the machine.
        dashboard_address=":0",
        # Workers log heartbeat errors when a job stops early; they are noise to a user.
        silence_logs=logging.CRITICAL,
        env=environment,
        # One retry on another worker is enough for a process lost to something else; beyond
        # it, map_batches splits the batch to find the entity that kills its process.
        # Without the dashboard, Dask still answers HTTP on a port, but draws no pages.
        scheduler_kwargs={"allowed_failures": 1, "dashboard": dashboard},
    )
    try:
        client = Client(local, set_as_default=False)
        try:
            _register_plugins(client, preload, unused)
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

    def __init__(
        self, compute: ComputeConfig, preload: Sequence[str] = (), dashboard: bool = True,
        start: int | None = None,
    ) -> None:  # fmt: skip
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None
        self._error: BaseException | None = None
        self._closer: threading.Thread | None = None
        self._asked = False
        self._unused = threading.Event()
        # A cluster at a scheduler address is used as it is: not ours to size.
        self._full_size = None if compute.scheduler else full_size(compute)
        self._thread = threading.Thread(target=self._start,
                                        args=(compute, preload, dashboard, start), daemon=True)  # fmt: skip
        self._thread.start()

    def _start(
        self, compute: ComputeConfig, preload: Sequence[str], dashboard: bool, start: int | None
    ) -> None:
        try:
            self._client = self._stack.enter_context(
                cluster(compute, preload, self._unused, dashboard, start)
            )
        except BaseException as exc:  # re-raised in the thread that asks for the client
            self._error = exc

    def client(self, workers: int | None = None) -> Client:
        """The client, once the cluster is up.

        ``workers`` grows a LocalCluster that started smaller to that many worker processes
        (never beyond its full size, never shrinking it); the new ones join while the first
        tasks already run. A cluster at a scheduler address is used as it is.

        Raises:
            ManyModelsError: the scheduler cannot be reached.
        """
        self._asked = True
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._client is not None
        if workers is not None and self._full_size is not None:
            local = self._client.cluster
            wanted = min(workers, self._full_size)
            if wanted > len(local.worker_spec):
                local.scale(wanted)
        return self._client

    def release(self) -> None:
        """Start shutting the cluster down in the background (the driver has more to do)."""
        if not self._asked:
            # Never used (a retrain that found nothing to do): its workers need not import the
            # task modules, a second or more of each one's CPU, only to be stopped.
            self._unused.set()
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
    compute: ComputeConfig, preload: Sequence[str] = (), dashboard: bool = True,
    start: int | None = None,
) -> Iterator[PendingCluster]:  # fmt: skip
    """Start the cluster now, use it later with ``pending.client()`` (``dashboard`` and
    ``start``: as for :func:`cluster`).

    On exit the cluster shuts down in the background: a job's results are safe by then, and
    stopping worker processes takes a few tenths of a second that the caller need not wait
    for. The interpreter waits for every shutdown still running before it exits.
    """
    pending = PendingCluster(compute, preload, dashboard, start)
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
    split: Callable[[Batch], Sequence[Batch]] | None = None,
    inputs: Sequence[Future | None] | None = None,
) -> Iterator[tuple[Batch, Any]]:
    """Run ``function(batch, *args)`` for every batch and yield results as they complete.

    Stopping the iteration early cancels the batches still queued or running.

    A task that raises yields the exception in place of a result, so the caller can record its
    batch as failed and go on. A task that was lost with its worker process (an entity called
    ``os._exit``, crashed native code, outgrew the memory limit) or that asked to end it
    (``sys.exit``) is run again as the smaller batches that ``split`` gives, down to batches
    that cannot be split. A batch of one that was lost beside others runs once more at the
    end, alone on the cluster, since a neighbour's crash may have taken it: lost again, it is
    the culprit, and yields a :class:`~manymodels.crashes.WorkerCrash` that says what happened.
    Results are released as soon as they are yielded, so Dask never recomputes a task whose
    side effects were already consumed.

    Args:
        split: the smaller batches that together hold a batch's work (fewer than two when it
            cannot be split, e.g. :func:`halves`); None yields a lost batch as it is.
        inputs: per batch, a future whose result is passed as one more argument,
            ``function(batch, *args, input)``: work that an earlier round of tasks left on the
            workers for this batch (the task runs where that result is). A batch run again
            after a loss gets none, and must do without.
    """
    shared = _share(client, args, name)
    futures: dict[Future, Batch] = {}

    def submit(batch: Batch, key: str, *extra: Future) -> Future:
        future = client.submit(run_guarded, function, batch, *shared, *extra, key=key,
                               pure=False, retries=retries)  # fmt: skip
        futures[future] = batch
        return future

    def first(index: int, batch: Batch) -> Future:
        given = inputs[index] if inputs is not None else None
        return submit(batch, f"{name}-{index}", *([given] if given is not None else []))

    queue = as_completed(
        [first(index, batch) for index, batch in enumerate(batches)], loop=client.loop
    )
    suspects: list[tuple[str, Batch]] = []
    try:
        for future in queue:
            key, batch = str(future.key), futures.pop(future)
            outcome = _outcome(future)
            future.release()
            if isinstance(outcome, _Lost | WorkerCrash):
                parts = split(batch) if split is not None else ()
                if len(parts) > 1:
                    for index, part in enumerate(parts):
                        queue.add(submit(part, f"{key}.{index}"))
                    continue
                if isinstance(outcome, _Lost):
                    # Lost beside other tasks, it may have died of a neighbour's crash.
                    suspects.append((key, batch))
                    continue
            yield batch, outcome
        for key, batch in suspects:
            # Alone on the cluster, a task that is lost again was lost by its own doing.
            future = submit(batch, f"{key}.alone")
            outcome = _outcome(future)
            del futures[future]
            future.release()
            if isinstance(outcome, _Lost):
                outcome = WorkerCrash(_why_lost(client, outcome))
            yield batch, outcome
    finally:
        # Reached early when the caller stops (failure budget spent, interrupted).
        if futures:
            client.cancel(list(futures))
        client.cancel(shared)


Kept = Future
"""A task's result left on the workers for a later round of tasks."""


def submit_kept(
    client: Client, function: Callable[..., Any], batches: Sequence[Batch], *args: Any, name: str
) -> list[Kept]:
    """Submit ``function(batch, *args)`` for every batch and return the futures, whose results
    stay on the workers for a later round of tasks (see ``inputs`` of :func:`map_batches`);
    the caller releases them (:func:`release`). ``args`` travel once, as for
    :func:`map_batches`.
    """
    shared = _share(client, args, name)
    return [
        client.submit(run_guarded, function, batch, *shared, key=f"{name}-{index}", pure=False)
        for index, batch in enumerate(batches)
    ]


def summaries(
    client: Client, function: Callable[[Any], Any], kept: Sequence[Kept]
) -> Iterator[tuple[int, Any]]:
    """``function`` of each kept result, computed where it is, as each completes: the index
    of the kept result and what ``function`` returned, or the exception that its task (or
    the kept one's) raised."""
    pending = {client.submit(function, future, pure=False): index
               for index, future in enumerate(kept)}  # fmt: skip
    for future in as_completed(list(pending), loop=client.loop):
        index = pending[future]
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            outcome = exc
        future.release()
        yield index, outcome


def release(futures: Sequence[Kept | None]) -> None:
    """Let the workers drop kept results (None entries are skipped)."""
    for future in futures:
        if future is not None:
            future.release()


def _share(client: Client, args: Sequence[Any], name: str) -> list[Future]:
    """Arguments shared by every task (the job's settings, champions), on every worker.

    They travel once to the scheduler, as tasks of their own: unlike scattered data, a task
    that was lost with its worker is computed again, so the batches that need it are never
    cancelled.
    """
    with warnings.catch_warnings():
        # Sent once, by design: Dask's advice against big graphs is about repeated data.
        warnings.filterwarnings("ignore", message="Sending large graph")
        shared = [
            client.submit(_identity, arg, key=f"{name}-shared-{index}", pure=False)
            for index, arg in enumerate(args)
        ]
    _copy_to_every_worker(client, shared)
    return shared


def _copy_to_every_worker(client: Client, shared: list[Future]) -> None:
    """Put a copy of the shared arguments on every worker before the batches are submitted.

    Dask places a task where its inputs are: left on the one worker that computed them, the
    arguments that every batch needs drew every batch to that worker, and on 2 workers one did
    nearly all the fitting (30 s of CPU against 1 s, training 150 entities). With a copy on each
    worker, the scheduler spreads the batches by load. A worker that joins later fetches them
    on its first batch; should the copy fail, the job still runs, only less evenly.
    """
    if not shared:
        return
    try:
        client.replicate(shared, callback_timeout=_REPLICATE_TIMEOUT)
    except Exception:  # noqa: BLE001 - balance is an optimisation, never a reason to fail
        logger.debug("could not copy the shared task arguments to every worker", exc_info=True)


def halves(batch: list[Item]) -> list[list[Item]]:
    """A batch split in two (for ``map_batches``); a batch of one stays whole."""
    middle = (len(batch) + 1) // 2
    return [batch[:middle], batch[middle:]] if len(batch) > 1 else [batch]


def _identity(value: Any) -> Any:
    return value


class _Lost(Exception):
    """A task that was lost with its worker process; ``worker`` is where it last ran."""

    def __init__(self, worker: str | None) -> None:
        super().__init__(worker)
        self.worker = worker


def _outcome(future: Future) -> Any:
    try:
        return future.result()
    except KilledWorker as exc:
        return _Lost(exc.last_worker.address)
    except (FutureCancelledError, asyncio.CancelledError):
        # Nothing of ours cancels a task still being waited for: its worker went away.
        return _Lost(None)
    except Exception as exc:  # the task itself failed; the caller records its entities
        return exc


def _why_lost(client: Client, lost: _Lost, wait: float = 10.0) -> str:
    """Why the worker of a lost task died, from the cluster's event log.

    The nanny's report may reach the scheduler a moment after the task was declared lost
    (seconds later on a busy machine), so the log is read again for up to ``wait`` seconds; a
    dead worker is rare enough that waiting for its reason costs nothing that matters.
    """
    if lost.worker is None:
        return UNKNOWN_DEATH
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            events = {
                topic: [message for _, message in client.get_events(topic)]
                for topic in (MEMORY_TOPIC, EXIT_TOPIC)
            }
        except Exception:  # noqa: BLE001 - a scheduler that cannot say still fails the batch
            return UNKNOWN_DEATH
        reason = describe_death(lost.worker, events)
        if reason is not None:
            return reason
        time.sleep(0.2)
    return UNKNOWN_DEATH
