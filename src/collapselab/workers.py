"""Worker processes (the loop's chains, the pipeline's shards) that do not outlive their parent."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(every: float = 0.5) -> None:
    """Stop this worker process soon after the process that started it dies (SIGKILL, out of memory).

    Call it in the worker (a pool's ``initializer``). A loop worker runs a whole chain of generations
    as one task; without this it would go on for minutes as an orphan, writing sample files into a
    run folder that a ``--resume`` may be writing too.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
