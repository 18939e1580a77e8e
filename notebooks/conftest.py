"""nbval waits only 5 s for a cell's outputs once the kernel has answered; on a loaded machine a
cell that trained for minutes (tqdm output included) can miss that and fail without an error of
its own. Every notebook cell item gets a minute instead."""

import os

OUTPUT_TIMEOUT_S = 60

# nbval reads a cell's messages only after the cell has run, so a cell that trains for minutes
# queues every progress-bar refresh; our reading of a 04 training cell that still timed out with the
# minute above (on a slower CPU) is that past ZeroMQ's high-water mark the cell's last messages were
# dropped. Fewer messages: kernels inherit this environment, so tqdm refreshes at most every 5 s.
os.environ.setdefault("TQDM_MININTERVAL", "5")


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cell items
            item.output_timeout = OUTPUT_TIMEOUT_S
