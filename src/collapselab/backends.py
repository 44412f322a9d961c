"""Backends: where a map of independent tasks runs (the pipeline's shards, a sweep's chains).

    >>> from collapselab.backends import make_backend
    >>> with make_backend("ray", jobs=2) as backend:
    ...     results = backend.map(work, tasks)   # [work(t) for t in tasks], run as Ray tasks

Both backends promise the same thing, so an output never depends on which one ran it:
``map(fn, tasks, on_done=None)`` returns ``[fn(t) for t in tasks]`` in task order; ``on_done()`` is
called once per finished task (a progress bar's tick), in any order; when tasks fail, no new task
starts, the running ones finish, and the exception of the *earliest* failed task is raised, as
itself (a :class:`~collapselab.errors.UserError` stays a ``UserError``, so the CLI prints one line).

- ``local``: :class:`collapselab.pipeline.shards.Pool`, ``jobs`` local processes (one: in this process).
- ``ray``: each task a Ray task (one CPU each), at most ``jobs`` of them at once (default: every CPU
  of the cluster). Without ``address``, a Ray already started in this process (``ray.init`` in your
  own script) is used; otherwise a local Ray is started with ``num_cpus=jobs`` (default all cores)
  and stopped again by :meth:`RayBackend.close`. With ``address`` (``"auto"``, ``"ray://HOST:10001"``,
  ``"HOST:6379"``), this process joins that cluster. A Ray task runs in the caller's current folder
  when its node has that folder, so relative paths mean the same on both backends.

Ray's workers must be able to import ``collapselab``: an editable or ordinary install on this
machine is enough for a local Ray. On a remote cluster, install the same version on every node
(``pip install "collapselab[ray]"`` in the image), or ship this checkout with a runtime
environment by starting Ray yourself before calling the API::

    ray.init(address="ray://head:10001",
             runtime_env={"py_modules": ["src/collapselab"], "pip": ["pyarrow", "numpy", ...]})

(the ``pip`` list: the core dependencies from ``pyproject.toml``). Input and output paths must
then be visible to every node (a shared file system, or ``s3://``/``gs://`` URLs).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable, Sequence

from collapselab.errors import UserError

BACKENDS = ("local", "ray")
RAY_MISSING = 'the ray backend needs Ray, which is not installed: pip install -e ".[ray]" (or pip install "collapselab[ray]").'


def make_backend(name: str = "local", *, jobs: int | None = None, address: str | None = None) -> "LocalBackend | RayBackend":
    """The backend called ``name`` (``"local"`` or ``"ray"``); use it as a context manager."""
    from collapselab.pipeline.shards import check_jobs

    if name not in BACKENDS:
        raise UserError(f"--backend {name}: unknown backend; choose one of {', '.join(BACKENDS)}.")
    if jobs is not None:
        check_jobs(jobs)
    if name == "local":
        if address is not None:
            raise UserError(f"--address {address}: only the ray backend joins a cluster; add --backend ray or drop --address.")
        return LocalBackend(check_jobs(jobs))
    return RayBackend(jobs, address)


class LocalBackend:
    """``jobs`` local processes (:class:`~collapselab.pipeline.shards.Pool`)."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        from collapselab.pipeline.shards import Pool

        self.jobs = jobs
        self._pool = Pool(jobs)

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], on_done: Callable[[], None] | None = None) -> list:
        return self._pool.map(fn, tasks, on_done)

    def close(self) -> None:
        self._pool.__exit__(None, None, None)

    def __enter__(self) -> "LocalBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def import_ray():
    """``ray``, or one UserError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def check_reachable(address: str) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) that nothing answers at is one UserError at once
    (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray resolves them, and fails fast
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"--address {address}: nothing answers at {host}:{port} ({e.strerror or e}). Check the address "
                        "(`ray status` on the head node prints it) or start a cluster with `ray start --head`.") from None


def _call(fn: Callable[[Any], Any], task: Any, cwd: str) -> Any:
    """One task, in a Ray worker, in the caller's current folder when this node has it (relative
    paths then mean what they mean to the caller, as on the local backend)."""
    if cwd != os.getcwd() and os.path.isdir(cwd):
        os.chdir(cwd)
    return fn(task)


class RayBackend:
    """Each task a Ray task; at most ``jobs`` in flight, submitted in task order."""

    name = "ray"

    def __init__(self, jobs: int | None = None, address: str | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         configure_logging=True)
            if address is not None:
                check_reachable(address)
            try:
                if address is None:  # "local": a new Ray, never a cluster that `ray start` left running
                    ray.init(address="local", num_cpus=jobs, **quiet)
                else:
                    ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at --address {address}" if address else "a local Ray"
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"cannot start {where}: {first}. "
                                + ("Check the address (`ray status` on the head node) or start one with `ray start --head`."
                                   if address else "Check `ray status`, or pass --address of a running cluster.")) from None
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.jobs = jobs or max(1, cpus)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_call)

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], on_done: Callable[[], None] | None = None) -> list:
        ray = self._ray
        tasks = list(tasks)
        tick = on_done or (lambda: None)
        if not tasks:
            return []
        fn_ref = ray.put(fn)  # serialised once, not once per task
        cwd = os.getcwd()
        results: list[Any] = [None] * len(tasks)
        errors: dict[int, BaseException] = {}
        running: dict[Any, int] = {}
        nxt = 0
        try:
            while running or (nxt < len(tasks) and not errors):
                while nxt < len(tasks) and len(running) < self.jobs and not errors:
                    running[self._remote.remote(fn_ref, tasks[nxt], cwd)] = nxt
                    nxt += 1
                [ref], _ = ray.wait(list(running), num_returns=1)
                i = running.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    errors[i] = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                    continue
                tick()
        except BaseException:
            for ref in running:  # Ctrl-C or a lost cluster: stop what still runs
                ray.cancel(ref, force=True)
            raise
        if errors:
            raise errors[min(errors)]
        return results

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def __enter__(self) -> "RayBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
