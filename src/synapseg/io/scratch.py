"""Release of volume-sized intermediates held in temporary memory-mapped files.

A volume-sized intermediate (the model-grid image and blended probabilities of
:func:`synapseg.infer.predict.predict_volume`, the component labels of
:func:`synapseg.post.instances.candidate_instances`) lives in an unlinked temporary file
mapped into memory: page cache that the kernel may write out and evict, not the process's
anonymous memory, so a tomogram larger than RAM still runs. The price comes at the end: the
last unmapping of such a file waits until the kernel's writeback of its dirty pages has
finished (0.7-1.0 s per 600 MB on the dev VM, with no CPU used and the GIL released).
:func:`release_in_background` leaves that wait to a daemon thread, so the next stage starts
at once (issue 17).
"""

from __future__ import annotations

import threading
from typing import Any


def release_in_background(arrays: list[Any]) -> threading.Thread:
    """Drop the arrays in ``arrays`` in a daemon thread (the list is emptied here).

    The caller hands over the last references: delete every other name for them first
    (``maps = [a, b]; del a, b; release_in_background(maps)``), or the caller's own
    ``del`` does the slow unmapping after all. Harmless for in-memory arrays.
    """
    held = list(arrays)
    arrays.clear()
    thread = threading.Thread(target=held.clear, name="synapseg-release", daemon=True)
    thread.start()
    return thread
