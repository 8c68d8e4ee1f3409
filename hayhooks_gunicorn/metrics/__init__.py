"""Metrics for the whole server: every worker writes prometheus_client's multiprocess files into one directory.

``multiproc_dir`` is that directory (created by the master, inherited by workers, kept bounded as workers come
and go); ``instruments`` are the kit's metrics; ``requests`` counts and times pipeline calls in each worker;
``reloads`` records each worker's reload results; ``endpoint`` serves ``GET /metrics`` from any worker, rendered
on ``scrape_thread`` (not on the pool that runs pipeline calls).
"""

from __future__ import annotations

__all__: list[str] = []
