"""Where heavy work runs: this process or Dask workers (the choice behind `--engine` and `--scheduler`)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.engine import Engine

ENGINES = ("local", "dask")


def dask_context(compute: str, scheduler: str | None, workers: int) -> AbstractContextManager | None:
    """A Dask client context when asked for one (compute 'dask' or a scheduler address), else None."""
    if compute not in ENGINES:
        raise ValueError(f"unknown engine {compute!r}; one of {', '.join(ENGINES)}")
    if compute != "dask" and not scheduler:
        return None
    from geo.scale import dask_client

    return dask_client(scheduler, workers=workers)


def label_partitions(engine: Engine, calls_per_partition: int) -> int | None:
    """Partitions of about `calls_per_partition` calls each (one transaction each); None when no calls are stored."""
    from geo.scale import calls_extent

    extent = calls_extent(engine)
    if extent is None:
        return None
    # Ceiling division on the planner's row estimate.
    return max(1, -(-extent[2] // max(calls_per_partition, 1)))
