"""nbval waits only 5 s for a cell's outputs once the kernel has answered; on a loaded machine a
cell that trained for minutes (tqdm output included) can miss that and fail without an error of
its own. Every notebook cell item gets a minute instead."""

OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cell items
            item.output_timeout = OUTPUT_TIMEOUT_S
