"""The health page's charts: inline SVG (no script, nothing fetched) with a time axis (dates, UTC), a value axis
from zero, the threshold as a dashed line where there is one, and failures marked apart (a red ✕ on the axis)."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from datetime import UTC, datetime

from coldcopy.humanize import when

TICK_STEPS = [3600 * h for h in (1, 3, 6, 12, 24, 48, 96, 168, 336, 720)]  # time-axis ticks: at most ~6
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 8, 18
LINE, FAILED, THRESHOLD = "#1565c0", "#c62828", "#ed8a00"


def moment(value) -> datetime:
    """An ISO string or a datetime, in UTC (naive ones are UTC already)."""
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def plain(value: float) -> str:
    """An axis label: ``0``, ``0.05``, ``12.5``, ``3,600``."""
    return f"{value:,.0f}" if abs(value) >= 100 or value == 0 else f"{value:,.2f}".rstrip("0").rstrip(".")


def nice(value: float) -> float:
    """The axis' top: ``value`` rounded up to 1, 2, 2.5 or 5 × a power of ten (1 for nothing above zero)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if value <= m * power * (1 + 1e-9))


def _time_ticks(t0: float, t1: float) -> tuple[list[float], str]:
    step = next((s for s in TICK_STEPS if (t1 - t0) / s <= 6), TICK_STEPS[-1])
    first = (int(t0) // step + 1) * step if int(t0) % step else int(t0)
    ticks = [float(t) for t in range(first, int(t1) + 1, step)]
    return ticks, ("%H:%M" if step < 86400 else "%b %d")


def chart(points: list, *, failures: list | None = None, threshold: float | None = None,
          threshold_label: str = "", label: Callable[[float], str] = str, width: int = 300, height: int = 120,
          least: int = 2) -> str:
    """``points``: ``[[time, value], …]`` drawn as a line with a dot each (a tooltip: the time and
    ``label(value)``); ``failures``: ``[[time, why], …]`` drawn as red ✕ on the time axis; ``threshold``: a dashed
    line. "not enough history" below ``least`` points and failures."""
    values = sorted((moment(t).timestamp(), float(v)) for t, v in points if v is not None)
    failed = sorted((moment(t).timestamp(), why) for t, why in failures or [] if t)
    if len(values) + len(failed) < least:
        return (f'<svg class="spark" width="{width}" height="{height}" role="img">'
                f'<text x="{LEFT}" y="{height // 2}">not enough history</text></svg>')
    times = [t for t, _ in values] + [t for t, _ in failed]
    t0, t1 = min(times), max(times)
    if t1 - t0 < 3600:
        t0, t1 = t0 - 1800, t1 + 1800
    high = nice(max([v for _, v in values] + ([threshold] if threshold is not None else []) + [0.0]))
    low = -nice(-min([v for _, v in values] + [0.0])) if any(v < 0 for _, v in values) else 0.0
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - (v - low) / ((high - low) or 1.0) * plot_h

    parts = [f'<svg class="spark" width="{width}" height="{height}" role="img">']
    for v in (low, (low + high) / 2, high):  # the value axis: three labels and their grid lines
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{_e(plain(v))}</text>')
    ticks, fmt = _time_ticks(t0, t1)
    for t in ticks:  # the time axis
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 3}" '
                     f'class="axis"/><text x="{x(t):.1f}" y="{height - 4}" text-anchor="middle">'
                     f'{datetime.fromtimestamp(t, UTC):{fmt}}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" class="axis"/>')
    if threshold is not None:
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                     f'stroke="{THRESHOLD}" stroke-dasharray="5,3" class="threshold"><title>{_e(threshold_label)}'
                     f'</title></line><text x="{width - RIGHT}" y="{y(threshold) - 3:.1f}" text-anchor="end" '
                     f'class="threshold-label">{_e(threshold_label)}</text>')
    if len(values) > 1:
        xy = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        parts.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="1.5" points="{xy}"/>')
    if len(values) <= 60:  # a dot each where they can be told apart (drills), with its tooltip
        parts += [f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{LINE}" class="point">'
                  f'<title>{_e(_when(t))}: {_e(label(v))}</title></circle>' for t, v in values]
    base = TOP + plot_h
    parts += [f'<path d="M{x(t) - 4:.1f},{base - 4:.1f}l8,8m0,-8l-8,8" stroke="{FAILED}" stroke-width="2" '
              f'class="failed"><title>{_e(_when(t))}: failed: {_e(str(why)[:200])}</title></path>'
              for t, why in failed]
    return "".join(parts) + "</svg>"


def _when(t: float) -> str:
    return when(datetime.fromtimestamp(t, UTC))


def _e(text: str) -> str:
    return html.escape(text)
