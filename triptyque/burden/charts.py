"""Inline SVG charts for the report: no script, no network, readable without a browser.

Every mark carries ``data-value`` and a ``<title>`` naming its source, and a modelled
mark is hatched, so a measured number never looks like a modelled one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2f6690", "#d1495b", "#edae49", "#66a182", "#8e6c8a", "#3a7d44", "#b56576", "#00798c")
WIDTH = 760
FONT = 'font-family="system-ui, sans-serif" font-size="12"'

HATCH = ('<defs><pattern id="{id}" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="white" fill-opacity="0.0"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="white" stroke-width="2.2" stroke-opacity="0.75"/>'
         '</pattern></defs>')


@dataclass
class Segment:
    name: str
    value: float
    title: str


@dataclass
class Row:
    label: str
    segments: list[Segment]
    modelled: bool = False
    note: str = ""


@dataclass
class Legend:
    names: list[str] = field(default_factory=list)

    def color(self, name: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return PALETTE[self.names.index(name) % len(PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = float(10 ** math.floor(math.log10(value)))
    for step in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _fmt(value: float, unit: str) -> str:
    if value == 0:
        return "0"
    if unit == "EUR":
        return f"{value / 1000:,.0f}k EUR" if abs(value) >= 10_000 else f"{value:,.0f} EUR"
    if unit == "s":
        return f"{value:,.0f} s" if value >= 100 else f"{value:,.1f} s" if value >= 1 else f"{value * 1000:,.0f} ms"
    return f"{value:,.2f} {unit}"


def _svg(chart: str, height: int, label: str, body: list[str]) -> str:
    return (f'<svg class="chart" data-chart="{chart}" role="img" aria-label="{escape(label)}" '
            f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
            f'{FONT}><title>{escape(label)}</title>{HATCH.format(id=f"hatch-{chart}")}' + "".join(body) + "</svg>")


def legend_height(legend: Legend, hatched_note: bool) -> int:
    return 22 * len(_legend_rows(legend, hatched_note))


def _legend_rows(legend: Legend, hatched_note: bool) -> list[list[tuple[int, str]]]:
    """Legend entries placed left to right, wrapped to the chart's width: rows of (x, name)."""
    names = [*legend.names, *(["hatched: modelled (not measured)"] if hatched_note else [])]
    rows: list[list[tuple[int, str]]] = [[]]
    x = 10
    for name in names:
        width = 30 + 7 * len(name)
        if x + width > WIDTH and rows[-1]:
            rows.append([])
            x = 10
        rows[-1].append((x, name))
        x += width
    return rows


def _legend(legend: Legend, y: int, hatched_note: bool, chart: str) -> list[str]:
    out = []
    for line, row in enumerate(_legend_rows(legend, hatched_note)):
        top = y + 22 * line
        for x, name in row:
            if name in legend.names:
                out.append(f'<rect x="{x}" y="{top}" width="12" height="12" fill="{legend.color(name)}"/>')
            else:
                out.append(f'<rect x="{x}" y="{top}" width="12" height="12" fill="#777"/>'
                           f'<rect x="{x}" y="{top}" width="12" height="12" fill="url(#hatch-{chart})"/>')
            out.append(f'<text x="{x + 16}" y="{top + 10}">{escape(name)}</text>')
    return out


def stacked_bars(chart: str, label: str, rows: list[Row], unit: str, *, log: bool = False) -> str:
    """Horizontal bars, one per row, segments stacked; a log axis for values spanning decades."""
    legend = Legend()
    for row in rows:
        for segment in row.segments:
            legend.color(segment.name)
    left = max([120, *(int(6.6 * len(r.label)) + 16 for r in rows)])
    right, bar, gap, top = 30, 20, 14, 28
    plot = WIDTH - left - right
    totals = [sum(s.value for s in r.segments) for r in rows] or [0.0]
    positive = [s.value for r in rows for s in r.segments if s.value > 0]
    if log:
        low = 10 ** math.floor(math.log10(min(positive))) if positive else 0.01
        high = 10 ** math.ceil(math.log10(max(totals))) if max(totals) > 0 else 1.0
        high = max(high, low * 10)

        def scale(v: float) -> float:
            return 0.0 if v <= low else plot * (math.log10(v) - math.log10(low)) / (math.log10(high) - math.log10(low))
        ticks = [low * 10 ** i for i in range(round(math.log10(high / low)) + 1)]
    else:
        high = _nice_max(max(totals))

        def scale(v: float) -> float:
            return plot * v / high
        ticks = [high * i / 4 for i in range(5)]
    hatched = any(r.modelled for r in rows)
    height = top + len(rows) * (bar + gap) + 34 + legend_height(legend, hatched)
    body = [f'<text x="{left}" y="16" font-weight="600">{escape(label)}</text>']
    axis_y = top + len(rows) * (bar + gap)
    for tick in ticks:
        x = left + scale(tick)
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>'
                    f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle" fill="#555">{_fmt(tick, unit)}</text>')
    for index, row in enumerate(rows):
        y = top + index * (bar + gap)
        body.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{escape(row.label)}</text>')
        x = 0.0
        for segment in (s for s in row.segments if s.value > 0):
            if log:
                start, end = scale(x) if x > 0 else 0.0, scale(x + segment.value)
            else:
                start, end = scale(x), scale(x + segment.value)
            x += segment.value
            width = max(end - start, 1.0)
            color = legend.color(segment.name)
            title = escape(f"{row.label} - {segment.name}: {_fmt(segment.value, unit)} - {segment.title}")
            body.append(f'<rect class="bar{" modelled" if row.modelled else ""}" x="{left + start:.1f}" y="{y}" '
                        f'width="{width:.1f}" height="{bar}" fill="{color}" data-value="{segment.value:.4f}">'
                        f'<title>{title}</title></rect>')
            if row.modelled:
                body.append(f'<rect x="{left + start:.1f}" y="{y}" width="{width:.1f}" height="{bar}" '
                            f'fill="url(#hatch-{chart})" pointer-events="none"/>')
        total = sum(s.value for s in row.segments)
        tag = "modelled" if row.modelled else "measured" if row.note != "cost" else ""
        text = _fmt(total, unit) + (f" ({tag})" if tag else "")
        anchor = "start" if scale(total) < plot - 110 else "end"
        body.append(f'<text x="{min(left + scale(total) + 6, WIDTH - 4):.1f}" y="{y + 14}" '
                    f'text-anchor="{anchor}" fill="#222">{escape(text)}</text>')
    body += _legend(legend, axis_y + 26, hatched, chart)
    return _svg(chart, height, label, body)


def line_chart(chart: str, label: str, series: dict[str, list[float]], unit: str, *, dashed: set[str]) -> str:
    """One line per series over months 1..N; ``dashed`` series use L-confidence figures (estimates)."""
    legend = Legend()
    for name in series:
        legend.color(name)
    left, right, top, plot_h = 80, 20, 28, 260
    plot_w = WIDTH - left - right
    months = max((len(v) for v in series.values()), default=1)
    high = _nice_max(max((max(v) for v in series.values() if v), default=1.0))
    body = [f'<text x="{left}" y="16" font-weight="600">{escape(label)}</text>']

    def xy(month: int, value: float) -> tuple[float, float]:
        return (left + plot_w * (month - 1) / max(months - 1, 1), top + plot_h * (1 - value / high))

    for i in range(5):
        value = high * i / 4
        _, y = xy(1, value)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="#ddd"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_fmt(value, unit)}</text>')
    for month in range(1, months + 1, max(1, months // 8)):
        x, _ = xy(month, 0)
        body.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">m{month}</text>')
    for name, values in series.items():
        color = legend.color(name)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(m, v) for m, v in enumerate(values, start=1)))
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        title = escape(f"{name}: {_fmt(values[-1], unit)} after {len(values)} months")
        body.append(f'<polyline class="series" data-series="{escape(name)}" data-value="{values[-1]:.2f}" '
                    f'points="{points}" fill="none" stroke="{color}" stroke-width="2.5"{dash}>'
                    f'<title>{title}</title></polyline>')
        x, y = xy(len(values), values[-1])
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
    legend_y = top + plot_h + 30
    body += _legend(legend, legend_y, False, chart)
    note_y = legend_y + legend_height(legend, False) + 10
    if dashed:
        body.append(f'<text x="10" y="{note_y}" fill="#555">dashed: the option uses estimate figures '
                    '(confidence L); every line is modelled from burden/figures.yaml</text>')
    return _svg(chart, note_y + 12, label, body)


def _log_ticks(low: float, high: float) -> list[float]:
    return [10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def _volume(value: float) -> str:
    for step, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= step:
            return f"{value / step:,.0f}{suffix}"
    return f"{value:,.0f}"


def volume_chart(chart: str, label: str, series: Mapping[str, list[tuple[float, float]]], *, marker: float,
                 flips: Mapping[str, float | None]) -> str:
    """Total cost (EUR) against monthly token volume (log-log), one line per option, labels at the line ends.

    ``marker`` is the scenario's own volume (a vertical line); ``flips`` the volume from which each option
    is cheaper than the managed API (a dot on its line), None when it never is.
    """
    legend = Legend()
    for name in series:
        legend.color(name)
    left, right, top, plot_h = 80, 90, 28, 260
    plot_w = WIDTH - left - right
    points = [p for values in series.values() for p in values if p[1] > 0 and math.isfinite(p[1])]
    if not points:
        return _svg(chart, 40, label, [f'<text x="10" y="24">{escape(label)}: nothing to plot</text>'])
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low = 10 ** math.floor(math.log10(min(p[1] for p in points)))
    y_high = 10 ** math.ceil(math.log10(max(p[1] for p in points)))
    y_high = max(y_high, y_low * 10)

    def xy(volume: float, eur: float) -> tuple[float, float]:
        x = left + plot_w * (math.log10(volume) - math.log10(x_low)) / max(math.log10(x_high / x_low), 1e-9)
        y = top + plot_h * (1 - (math.log10(eur) - math.log10(y_low)) / math.log10(y_high / y_low))
        return x, y

    body = [f'<text x="{left}" y="16" font-weight="600">{escape(label)}</text>']
    for tick in _log_ticks(y_low, y_high):
        _, y = xy(x_low, tick)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_fmt(tick, "EUR")}</text>')
    for tick in (t for t in _log_ticks(x_low, x_high) if x_low <= t <= x_high):
        x, _ = xy(tick, y_low)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>'
                    f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">'
                    f'{_volume(tick)}</text>')
    mx, _ = xy(marker, y_low)
    body.append(f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" stroke="#444" '
                f'stroke-dasharray="3 3"/><text x="{mx + 4:.1f}" y="{top + 10}" fill="#444">this scenario</text>')
    ends: list[tuple[float, str, str]] = []
    for name, values in series.items():
        color = legend.color(name)
        shown = [(v, e) for v, e in values if e > 0 and math.isfinite(e)]
        if not shown:
            continue
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(v, e) for v, e in shown))
        body.append(f'<polyline class="series" data-series="{escape(name)}" data-value="{shown[-1][1]:.2f}" '
                    f'points="{line}" fill="none" stroke="{color}" stroke-width="2.5"><title>'
                    f'{escape(name)}: total cost over the horizon by monthly token volume</title></polyline>')
        ends.append((xy(*shown[-1])[1], name, color))
        flip = flips.get(name)
        if flip is not None and x_low <= flip <= x_high:
            at = min(shown, key=lambda p: abs(math.log10(p[0] / flip)))
            fx, fy = xy(flip, at[1])
            body.append(f'<circle cx="{fx:.1f}" cy="{fy:.1f}" r="4.5" fill="white" stroke="{color}" '
                        f'stroke-width="2"><title>{escape(name)} cheaper than the API from {_volume(flip)} '
                        f'tokens a month</title></circle>')
    placed = -1e9
    for y, name, color in sorted(ends):
        y = max(y, placed + 14)  # labels at the line ends, never on top of each other
        placed = y
        body.append(f'<text class="end-label" x="{left + plot_w + 6}" y="{y + 4:.1f}" fill="{color}">'
                    f'{escape(name)}</text>')
    note_y = top + plot_h + 36
    body.append(f'<text x="10" y="{note_y}" fill="#555">x: tokens a month (input + output), y: total cost over '
                'the horizon, both log scale;</text>'
                f'<text x="10" y="{note_y + 16}" fill="#555">circle: where the option becomes cheaper than the '
                'managed API</text>')
    return _svg(chart, note_y + 26, label, body)


@dataclass
class Bar:
    name: str
    low: float
    high: float
    title: str


def tornado(chart: str, label: str, point: float, bars: list[Bar], unit: str) -> str:
    """One bar per figure from the total at its low value to the total at its high value, around ``point``."""
    left = max([160, *(int(6.6 * len(b.name)) + 16 for b in bars)])
    right, bar, gap, top = 80, 16, 8, 28
    plot = WIDTH - left - right
    low = min([point, *(min(b.low, b.high) for b in bars)])
    high = max([point, *(max(b.low, b.high) for b in bars)])
    span = (high - low) or 1.0

    def scale(v: float) -> float:
        return left + plot * (v - low) / span

    height = top + len(bars) * (bar + gap) + 30
    body = [f'<text x="10" y="16" font-weight="600">{escape(label)}</text>',
            f'<line x1="{scale(point):.1f}" y1="{top - 4}" x2="{scale(point):.1f}" '
            f'y2="{top + len(bars) * (bar + gap)}" stroke="#222"/>']
    for index, b in enumerate(bars):
        y = top + index * (bar + gap)
        start, end = sorted((scale(b.low), scale(b.high)))
        body.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{escape(b.name)}</text>'
                    f'<rect class="bar" x="{start:.1f}" y="{y}" width="{max(end - start, 1):.1f}" height="{bar}" '
                    f'fill="{PALETTE[0]}" data-value="{abs(b.high - b.low):.2f}">'
                    f'<title>{escape(b.title)}</title></rect>'
                    f'<text x="{min(end + 6, WIDTH - 4):.1f}" y="{y + 12}" fill="#222">'
                    f'{escape(_fmt(abs(b.high - b.low), unit))}</text>')
    axis_y = top + len(bars) * (bar + gap) + 16
    body.append(f'<text x="{left}" y="{axis_y}" fill="#555">{escape(_fmt(low, unit))}</text>'
                f'<text x="{scale(point):.1f}" y="{axis_y}" text-anchor="middle" fill="#222">'
                f'{escape(_fmt(point, unit))}</text><text x="{left + plot}" y="{axis_y}" text-anchor="end" '
                f'fill="#555">{escape(_fmt(high, unit))}</text>')
    return _svg(chart, height, label, body)
