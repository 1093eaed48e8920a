"""Progress reporting for long stages: a bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
logger = logging.getLogger("mtcompare.progress")


def progress(
    items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Yield ``items`` while showing rate and ETA.

    On a terminal this is a tqdm bar on stderr; otherwise (CI, log files) a
    log line every 30 seconds gives done/total, rate and ETA.
    """
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, unit=unit, mininterval=0.5)
        return
    yield from _logged(items, total, desc, unit)


def _logged(items: Iterable[T], total: int | None, desc: str, unit: str) -> Iterator[T]:
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= 30:
            last = now
            logger.info("%s", format_rate(desc, done, total, now - start, unit))
    logger.info("%s", format_rate(desc, done, total, time.monotonic() - start, unit))


def format_rate(desc: str, done: int, total: int | None, seconds: float, unit: str) -> str:
    """``"desc: 1,200/28,536 pairs, 410 pairs/s, ETA 1m07s"``."""
    rate = done / seconds if seconds > 0 else 0.0
    text = f"{desc}: {done:,}" + (f"/{total:,}" if total else "") + f" {unit}, {rate:,.1f} {unit}/s"
    if total and rate > 0 and done < total:
        text += f", ETA {format_duration((total - done) / rate)}"
    return text


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
