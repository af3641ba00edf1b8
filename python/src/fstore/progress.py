"""Waiting for server-side jobs with a progress display.

The display is a tqdm bar when tqdm can be imported, otherwise one status
line on stderr rewritten in place (``\\r``). Pass ``progress=False`` to the
client's waiting methods for neither.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any, Callable, Dict, Mapping, Optional, TextIO

from .errors import FeatureStoreTimeoutError

TERMINAL_STATUSES = ("succeeded", "failed")


def _tqdm_class() -> Any:
    """tqdm's class, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _parse_time(value: Any) -> Optional[dt.datetime]:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def job_fraction(job: Mapping[str, Any]) -> Optional[float]:
    """How far a job is, in [0, 1], when it says: a materialization job by
    ``completed_until`` within ``[start_date, end_date)``; None otherwise."""
    if job.get("status") == "succeeded":
        return 1.0
    start, end = _parse_time(job.get("start_date")), _parse_time(job.get("end_date"))
    done = _parse_time(job.get("completed_until"))
    if start is None or end is None or done is None or end <= start:
        return None
    return max(0.0, min(1.0, (done - start) / (end - start)))


def _counters(job: Mapping[str, Any]) -> Dict[str, Any]:
    keys = ("rows_read", "rows_written_offline", "rows_written_online", "rows_written",
            "rows_rejected")
    return {k: job[k] for k in keys if isinstance(job.get(k), int)}


class JobProgress:
    """Shows one job's progress: a percentage when the job has a range
    (materialization), else its status and row counters."""

    def __init__(self, description: str, enabled: bool = True,
                 stream: Optional[TextIO] = None) -> None:
        self.description = description
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._line_len = 0
        self._tqdm = _tqdm_class() if enabled else None
        if self._tqdm is not None:
            self._bar = self._tqdm(total=100, desc=description, unit="%", leave=True,
                                   file=self.stream,
                                   bar_format="{l_bar}{bar}| [{elapsed}{postfix}]")

    @property
    def uses_tqdm(self) -> bool:
        """Whether the display is a tqdm bar (else a plain line, or nothing)."""
        return self._bar is not None

    def update(self, job: Mapping[str, Any]) -> None:
        """Shows the job's current state."""
        if not self.enabled:
            return
        fraction = job_fraction(job)
        status = str(job.get("status", "?"))
        counters = _counters(job)
        if self._bar is not None:
            if fraction is not None:
                self._bar.n = round(fraction * 100)
            self._bar.set_postfix(status=status, **counters, refresh=False)
            self._bar.refresh()
            return
        text = f"{self.description}: {status}"
        if fraction is not None:
            text += f" {fraction * 100:3.0f}%"
        if counters:
            text += " " + " ".join(f"{k}={v}" for k, v in counters.items())
        pad = max(0, self._line_len - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._line_len = len(text)

    def close(self) -> None:
        """Ends the display (a final newline for the plain line)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._line_len:
            self.stream.write("\n")
            self.stream.flush()
            self._line_len = 0


def wait_for_job(fetch: Callable[[], Dict[str, Any]], first: Dict[str, Any], description: str,
                 *, progress: bool = True, poll_interval: float = 0.5,
                 timeout: Optional[float] = None) -> Dict[str, Any]:
    """Polls ``fetch()`` until the job's status is succeeded or failed and
    returns the last record. ``first`` is the record already known (the
    submit's answer). Polls quickly at first, then every ``poll_interval``
    seconds. Raises :class:`FeatureStoreTimeoutError` after ``timeout``
    seconds (None: no limit); the job goes on on the server."""
    bar = JobProgress(description, enabled=progress)
    deadline = None if timeout is None else time.monotonic() + timeout
    job = first
    delay = min(0.05, poll_interval)
    try:
        bar.update(job)
        while job.get("status") not in TERMINAL_STATUSES:
            if deadline is not None and time.monotonic() >= deadline:
                raise FeatureStoreTimeoutError(
                    f"{description}: job {job.get('id')} still {job.get('status')} after "
                    f"{timeout}s (it goes on on the server)", code="timeout", body=job)
            time.sleep(delay)
            delay = min(poll_interval, delay * 2)
            job = fetch()
            bar.update(job)
    finally:
        bar.close()
    return job
