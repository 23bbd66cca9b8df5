"""The dashboard's verdict chart: final verdicts per minute over the last hour, and the
Campaigns page's sparklines: a campaign's messages per bucket, as SVG geometry.

Drawn on the server, the chart from the per-minute counters in the database
(:func:`decision_queries.minute_stats`) into ``chart.svg``, a sparkline from the
campaign's ``rate`` into ``campaign_rows.html``; no script draws either.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from smps.web.pages.common import VERDICTS

CHART_WIDTH, CHART_HEIGHT, CHART_MINUTES = 720, 220, 60
SPARK_WIDTH, SPARK_HEIGHT = 96, 24


def verdict_chart(counts: list[dict[str, Any]], now_us: int) -> dict[str, Any]:
    """Stacked bars per minute (allow, block, tempfail) for the last hour, as SVG geometry.

    ``counts`` are :func:`decision_queries.minute_stats` rows; only account "" (final
    verdicts) is drawn. Returns the bars, y-axis ticks and totals for the template.
    """
    last_minute = now_us // 60_000_000
    first_minute = last_minute - CHART_MINUTES + 1
    per_minute: dict[int, dict[str, int]] = {}
    totals = dict.fromkeys(VERDICTS, 0)
    for row in counts:
        if row["account"] != "" or row["verdict"] not in totals:
            continue
        minute = int(datetime.fromisoformat(row["minute"].replace("Z", "+00:00")).timestamp()) // 60
        if first_minute <= minute <= last_minute:
            per_minute.setdefault(minute, {})[row["verdict"]] = row["count"]
            totals[row["verdict"]] += row["count"]
    peak = max((sum(m.values()) for m in per_minute.values()), default=0)
    scale_top = _nice_ceiling(peak)
    left, bottom, top = 48, 24, 8
    plot_h = CHART_HEIGHT - bottom - top
    slot = (CHART_WIDTH - left) / CHART_MINUTES
    bars = []
    for index in range(CHART_MINUTES):
        minute = first_minute + index
        y = CHART_HEIGHT - bottom
        for verdict in VERDICTS:
            count = per_minute.get(minute, {}).get(verdict, 0)
            if not count:
                continue
            height = plot_h * count / scale_top
            y -= height
            label = datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")
            bars.append(
                {
                    "x": round(left + index * slot + 1, 1),
                    "y": round(y, 1),
                    "w": round(max(slot - 2, 1), 1),
                    "h": round(height, 1),
                    "verdict": verdict,
                    "title": f"{label} UTC: {count:,} {verdict} ({count / 60:,.1f}/s)",
                }
            )
    steps = 4 if str(int(scale_top)).startswith("2") else 5  # whole-number ticks
    ticks = [
        {
            "y": round(CHART_HEIGHT - bottom - plot_h * i / steps, 1),
            "label": _short(scale_top * i / steps),
        }
        for i in range(steps + 1)
    ]
    x_labels = [
        {
            "x": round(left + i * slot, 1),
            "label": datetime.fromtimestamp((first_minute + i) * 60, UTC).strftime("%H:%M"),
        }
        for i in range(0, CHART_MINUTES, 15)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": left,
        "base": CHART_HEIGHT - bottom,
        "bars": bars,
        "ticks": ticks,
        "x_labels": x_labels,
        "totals": totals,
        "empty": not bars,
    }


def sparkline(rate: list[int]) -> dict[str, Any]:
    """A line of ``rate`` (counts per bucket, oldest first) from left to right, its
    peak at the top, over the area below it: SVG geometry for a table cell."""
    peak = max(rate, default=0)
    step = SPARK_WIDTH / max(len(rate) - 1, 1)
    low, high = SPARK_HEIGHT - 1, 2  # the line's y at zero and at the peak, inside the stroke
    points = [
        (round(i * step, 1), round(low - (low - high) * count / max(peak, 1), 1))
        for i, count in enumerate(rate)
    ]
    line = " ".join(f"{x},{y}" for x, y in points)
    return {
        "width": SPARK_WIDTH,
        "height": SPARK_HEIGHT,
        "line": line,
        "area": f"M0,{low} L{line.replace(' ', ' L')} L{points[-1][0]},{low} Z" if points else "",
        "peak": peak,
        "last": rate[-1] if rate else 0,
    }


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above ``value``, at least 10: the y-axis top."""
    if value <= 10:
        return 10.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
