"""collapselab.backends: the same map on local processes and on Ray (results in task order, the
earliest failed task's exception as itself, a UserError still a UserError)."""

from __future__ import annotations

import math
import os
import sys
import time

import pytest

from collapselab.backends import RAY_MISSING, check_reachable, make_backend
from collapselab.errors import UserError
from collapselab.pipeline.shards import check_jobs


def fail_at(task):
    """``task`` = (value, seconds to wait, message or None): a UserError with the message after the wait."""
    value, wait, message = task
    time.sleep(wait)
    if message is not None:
        raise UserError(message)
    return value * 10


@pytest.fixture(scope="module")
def ray_backend():
    """One local Ray for the module (two CPUs), started and stopped by the backend itself."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    if hasattr(ray, "cloudpickle"):  # this test module is not importable in Ray's workers: ship its functions
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with make_backend("ray", jobs=2) as backend:
        assert ray.is_initialized() and backend.jobs == 2
        yield backend
    assert not ray.is_initialized()  # the backend started it, so it stopped it


@pytest.fixture(params=["local1", "local2", "ray"])
def backend(request):
    if request.param == "ray":
        yield request.getfixturevalue("ray_backend")
        return
    with make_backend("local", jobs=int(request.param[-1])) as b:
        yield b


def test_results_in_task_order_and_one_tick_each(backend):
    ticks = []
    tasks = [(i, 0.05 * ((7 * i) % 3), None) for i in range(9)]  # unequal durations: they finish out of order
    assert backend.map(fail_at, tasks, on_done=lambda: ticks.append(1)) == [10 * i for i in range(9)]
    assert len(ticks) == 9
    assert backend.map(math.sqrt, [16, 9, 4]) == [4.0, 3.0, 2.0]
    assert backend.map(math.sqrt, []) == []


def test_the_earliest_failed_task_wins_and_a_user_error_stays_one(backend):
    # task 1 fails late, task 3 fails at once: the error is task 1's, whichever finished first
    tasks = [(0, 0, None), (1, 1.0, "first bad task"), (2, 0, None), (3, 0, "second bad task"), (4, 0, None)]
    with pytest.raises(UserError) as e:
        backend.map(fail_at, tasks)
    assert type(e.value) is UserError and str(e.value) == "first bad task"
    with pytest.raises(UserError, match=r"^--jobs 0: must be at least 1"):  # a library function's own UserError
        backend.map(check_jobs, [1, 2, 0, 3])
    with pytest.raises(ValueError, match="math domain error"):  # any other exception, as itself
        backend.map(math.sqrt, [1, -1])
    assert backend.map(abs, [-2, 3]) == [2, 3]  # still usable after a failure


def test_relative_paths_mean_the_callers_folder(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # after the backend (and Ray) started elsewhere
    assert backend.map(os.path.abspath, ["a.jsonl", "."]) == [str(tmp_path / "a.jsonl"), str(tmp_path)]


def test_bad_settings_are_one_user_error():
    with pytest.raises(UserError, match="--backend spark: unknown backend; choose one of local, ray"):
        make_backend("spark")
    with pytest.raises(UserError, match="--address auto: only the ray backend"):
        make_backend("local", address="auto")
    with pytest.raises(UserError, match="--jobs 0"):
        make_backend("local", jobs=0)


def test_an_address_nothing_answers_at_fails_at_once():
    with pytest.raises(UserError, match=r"--address ray://127\.0\.0\.1:1: nothing answers at 127\.0\.0\.1:1"):
        check_reachable("ray://127.0.0.1:1")
    check_reachable("auto")  # resolved by Ray itself


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError) as e:
        make_backend("ray", jobs=1)
    assert str(e.value) == RAY_MISSING and 'pip install -e ".[ray]"' in str(e.value)


def test_ray_runs_jobs_tasks_at_once_and_no_more(ray_backend):
    ray = pytest.importorskip("ray")
    t0 = time.perf_counter()
    assert ray_backend.map(fail_at, [(i, 0.4, None) for i in range(4)]) == [0, 10, 20, 30]
    assert time.perf_counter() - t0 < 1.4  # two at a time: 0.8 s and overhead, not 1.6 s
    with make_backend("ray", jobs=1) as one:  # joins the running Ray, does not own it
        t0 = time.perf_counter()
        assert one.map(fail_at, [(i, 0.3, None) for i in range(3)]) == [0, 10, 20]
        assert time.perf_counter() - t0 >= 0.9  # one at a time
    assert ray.is_initialized()  # closing a backend that joined leaves Ray running
