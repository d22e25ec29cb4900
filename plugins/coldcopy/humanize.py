"""Durations, sizes and moments as people read them (the health page, approval bodies, task logs)."""

from __future__ import annotations

from datetime import UTC, datetime


def duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``1 h 10 min``, ``2 d 3 h``: what a person reads, not ``4200.281529``."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def size(value: float | None) -> str:
    """``640 kB``, ``12.3 MB``, ``1.25 GB``."""
    if value is None:
        return "—"
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if abs(value) >= scale:
            amount = value / scale
            return f"{amount:,.2f} {unit}" if unit == "GB" else f"{amount:,.1f} {unit}"
    return f"{value:,.0f} B"


def when(value) -> str:
    """``2026-12-07 05:20:04 UTC``: a moment to the second, in UTC, said so (the one format of the health page,
    its tables, charts and summaries; naive values are UTC already)."""
    if not value:
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return f"{moment.astimezone(UTC) if moment.tzinfo else moment:%Y-%m-%d %H:%M:%S} UTC"
