"""A task that kills its worker process the first time it runs (for the retry test).

Workers import this module by name (the test folder is on ``sys.path``, which spawned
worker processes inherit).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def predict_or_die(block: Any, source: Any, decisions: Any, marker: str, **kw: Any) -> Any:
    """Kill this worker process on the first call for block (0, 0, 0), else predict it."""
    from synapseg.distributed.block_predict import predict_block

    flag = Path(marker)
    if block.index == (0, 0, 0) and not flag.exists():
        flag.write_text(str(os.getpid()))
        os._exit(1)  # the worker dies mid-task, as on a preempted node
    return predict_block(source, block, decisions, **kw)
