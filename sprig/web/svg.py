"""Charts as SVG drawn on the server: stacked bars over time, a line, bars per name. No script,
no style attribute (the pages' CSP allows neither inline), every text escaped."""
import datetime
from html import escape

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 180, 40, 22, 14
COLOURS = {'succeeded': '#16a34a', 'won': '#16a34a', 'failed': '#dc2626', 'lost': '#f59e0b',
           'skipped': '#94a3b8', 'waiting': '#2563eb', 'p50': '#2563eb', 'p95': '#93c5fd'}


def frame(title: str, body: list[str], legend: list[str], height: int = HEIGHT) -> str:
    """The chart with its legend under it."""
    keys = ''.join(f'<rect x="{LEFT + 110 * n}" y="{height + 2}" width="9" height="9" fill="{COLOURS[name]}"/>'
                   f'<text x="{LEFT + 13 + 110 * n}" y="{height + 10}">{escape(name)}</text>'
                   for n, name in enumerate(legend))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height + 14}" role="img" '
            f'font-family="sans-serif" font-size="10" fill="#475569"><title>{escape(title)}</title>'
            f'{"".join(body)}{keys}</svg>')


def scale(top: float) -> float:
    """A round maximum for the y axis, at or above top."""
    for nice in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000):
        if top <= nice:
            return nice
    return top


def axes(peak: float, starts: list[datetime.datetime], label) -> list[str]:
    plot = HEIGHT - BOTTOM - TOP
    marks = [f'<line x1="{LEFT}" y1="{TOP + plot}" x2="{WIDTH}" y2="{TOP + plot}" stroke="#cbd5e1"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{peak:g}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot}" text-anchor="end">0</text>']
    for n in range(0, len(starts), max(1, len(starts) // 6)):
        x = LEFT + (WIDTH - LEFT) * n / len(starts)
        marks.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}">{escape(label(starts[n]))}</text>')
    return marks


def bar(x: float, y: float, wide: float, tall: float, colour: str, tip: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{wide:.1f}" height="{tall:.1f}" fill="{COLOURS[colour]}">'
            f'<title>{escape(tip)}</title></rect>')


def stacked(title: str, chart: dict, label=lambda t: t.strftime('%H:%M')) -> str:
    """Bars per bucket, one colour a series, stacked."""
    starts, series = chart['starts'], chart['series']
    totals = [sum(values[n] for values in series.values()) for n in range(len(starts))]
    peak, plot, width = scale(max(totals, default=0)), HEIGHT - BOTTOM - TOP, (WIDTH - LEFT) / max(1, len(starts))
    body = axes(peak, starts, label)
    for n in range(len(starts)):
        base = TOP + plot
        for name, values in series.items():
            if values[n]:
                tall = plot * values[n] / peak
                base -= tall
                body.append(bar(LEFT + n * width, base, max(1.0, width - 1), tall, name, f'{values[n]} {name}'))
    return frame(title, body, list(series))


def line(title: str, chart: dict, label=lambda t: t.strftime('%H:%M')) -> str:
    starts, (name, values), = chart['starts'], *chart['series'].items()
    peak, plot = scale(max(values, default=0)), HEIGHT - BOTTOM - TOP
    step = (WIDTH - LEFT) / max(1, len(values) - 1)
    points = ' '.join(f'{LEFT + n * step:.1f},{TOP + plot - plot * value / peak:.1f}' for n, value in enumerate(values))
    drawn = f'<polyline points="{points}" fill="none" stroke="{COLOURS[name]}" stroke-width="2"/>'
    return frame(title, [*axes(peak, starts, label), drawn], [name])


def empty(title: str, message: str) -> str:
    return frame(title, [f'<text x="{LEFT}" y="{TOP + 12}">{escape(message)}</text>'], [], TOP + 24)


def per_name(title: str, rows: list[dict]) -> str:
    """Two bars per task name: p50 over p95, in seconds."""
    height = TOP + 18 * len(rows) + BOTTOM + 6
    peak = max((row['p95'] for row in rows), default=0) or 1
    body = []
    for n, row in enumerate(rows):
        y = TOP + 18 * n
        body.append(f'<text x="{LEFT + 120}" y="{y + 11}" text-anchor="end">{escape(row["name"][:22])}</text>')
        for key, inset in (('p95', 0), ('p50', 3)):
            wide = (WIDTH - LEFT - 200) * row[key] / peak
            body.append(bar(LEFT + 125, y + inset, max(1.0, wide), 14 - 2 * inset, key, f'{key} {row[key]:.3f} s'))
        body.append(f'<text x="{WIDTH - 70}" y="{y + 11}">{row["p50"]:.3f} / {row["p95"]:.3f} s</text>')
    if not rows:
        return empty(title, 'No task ran in the last hour.')
    return frame(title, body, ['p50', 'p95'], height - 4)
