"""Worker processes die with their parent: a SIGKILLed run leaves no orphan writing into its folder."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, signal, sys
    import collapselab as cl

    def on_event(e):
        if e.kind == "generation" and e.generation >= 1:  # the workers are busy with their chains: record them, then die
            pids = [p.pid for p in multiprocessing.active_children()]
            open(sys.argv[3], "w").write(json.dumps(pids))
            os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        cl.run_experiment(json.loads(sys.argv[1]), out=sys.argv[2], jobs=2, on_event=on_event)
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its exit status waits to be read


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_loop_workers_exit_when_the_run_is_killed(shared_text_folder, tmp_path):
    script, pids_file, out = tmp_path / "kill_me.py", tmp_path / "pids.json", tmp_path / "run"
    script.write_text(SCRIPT, encoding="utf-8")
    cfg = {"corpus": str(shared_text_folder), "train_items": 300, "generations": 200,
           "policies": ["replace", "accumulate"], "seeds": [0]}
    proc = subprocess.run([sys.executable, str(script), json.dumps(cfg), str(out), str(pids_file)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == -9, proc.stderr[-3000:]
    pids = json.loads(pids_file.read_text())
    assert len(pids) >= 2  # the pool's workers (and the queue's manager, if any)
    deadline = time.monotonic() + 15  # 200 generations would take minutes: only the watchdog ends them this soon
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:  # do not leave them running if the test fails
        os.kill(p, 9)
    assert not left, f"workers still running after their parent was killed: {left}"
