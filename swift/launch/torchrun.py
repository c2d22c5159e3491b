"""`python -m swift.launch.torchrun ...`: torchrun, minus its traceback when a rank fails.

A rank that stops on a user error has already printed the message (e.g. "swift sft: error: --dataset: ...");
torchrun's own ChildFailedError report after it is noise. The exit status of the failed rank is kept.
"""
from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main()
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        first = next((c for c in codes if c and c > 0), 1)
        print(f"swift: a training process failed (exit status {first}); its message is above", file=sys.stderr)
        sys.exit(first)
