"""`fleet report --format png`: the period at a glance for a supervisor, drawn with Pillow.

Top: scans per hour, one line per entrance (a legend names each colour). Bottom: the deny reasons
of the whole period as bars, longest first. Entrances beyond the palette share its last colour,
named "others" in the legend, so the picture stays readable for a large site.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from .report import Place, Report
from .report_text import when

WIDTH, HEIGHT = 1000, 680
BACKGROUND, INK, GRID, BAR = (255, 255, 255), (30, 30, 30), (225, 225, 225), (200, 70, 60)
#: Colour-blind safe, then greys.
PALETTE = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (240, 228, 66), (120, 120, 120))
LEFT, RIGHT, TOP, LINES_BOTTOM = 70, 220, 50, 390
BARS_TOP, BARS_BOTTOM = 470, 660
HOUR = 3_600_000


def name(place: Place) -> str:
    return f"{place[0] or '?'}/{place[1] or '?'}"


def colours(report: Report) -> dict[Place, tuple[int, int, int]]:
    """The colour of each entrance's line, busiest first."""
    busiest = sorted(report.hourly, key=lambda p: (-sum(report.hourly[p].values()), name(p)))
    return {place: PALETTE[min(i, len(PALETTE) - 1)] for i, place in enumerate(busiest)}


def render(report: Report) -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    draw.text((LEFT, 12), f"Scans per hour, {when(report.since_ms)} to {when(report.until_ms)}",
              fill=INK, font=font)
    _lines(draw, report, small)
    _bars(draw, report, font, small)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _lines(draw: ImageDraw.ImageDraw, report: Report, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
           ) -> None:
    first, last = report.since_ms // HOUR * HOUR, max(report.until_ms - 1, report.since_ms) // HOUR * HOUR
    hours = max(1, (last - first) // HOUR)
    step = _step(max([n for counts in report.hourly.values() for n in counts.values()] + [1]))
    peak = 4 * step
    right = WIDTH - RIGHT

    def x(hour: int) -> float:
        return LEFT + (hour - first) / HOUR / hours * (right - LEFT)

    def y(n: int) -> float:
        return LINES_BOTTOM - n / peak * (LINES_BOTTOM - TOP)

    for i in range(5):
        value = i * step
        draw.line([(LEFT, y(value)), (right, y(value))], fill=GRID)
        draw.text((LEFT - 8, y(value)), str(value), fill=INK, font=font, anchor="rm")
    every = max(1, -(-(hours + 1) // 12))
    days = last - first >= 86_400_000
    for i in range(0, hours + 1, every):
        hour = first + i * HOUR
        draw.line([(x(hour), LINES_BOTTOM), (x(hour), LINES_BOTTOM + 4)], fill=INK)
        label = when(hour)[5:13].replace("T", " ") if days else when(hour)[11:16]
        draw.text((x(hour), LINES_BOTTOM + 8), label, fill=INK, font=font, anchor="mt")
    draw.line([(LEFT, TOP), (LEFT, LINES_BOTTOM), (right, LINES_BOTTOM)], fill=INK, width=2)
    draw.text((right, LINES_BOTTOM + 28), "hour starting (UTC)", fill=INK, font=font, anchor="rt")
    draw.text((LEFT - 8, TOP - 14), "scans", fill=INK, font=font, anchor="rb")
    palette = colours(report)
    for place in sorted(palette, key=lambda p: -sum(report.hourly[p].values())):
        counts = report.hourly[place]
        points = [(x(h), y(counts.get(h, 0))) for h in range(first, last + 1, HOUR)]
        if len(points) > 1:
            draw.line(points, fill=palette[place], width=3, joint="curve")
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=palette[place])
    shown = list(palette.items())[:len(PALETTE)]
    for i, (place, colour) in enumerate(shown):
        top = TOP + i * 22
        draw.rectangle([right + 20, top, right + 36, top + 14], fill=colour)
        label = "others" if i == len(PALETTE) - 1 and len(palette) > len(PALETTE) else name(place)
        draw.text((right + 44, top), label[:22], fill=INK, font=font)


def _step(peak: int) -> int:
    """A round step (1, 2 or 5 times a power of ten) of which four reach `peak`."""
    scale = 1
    while True:
        for unit in (1, 2, 5):
            if 4 * unit * scale >= peak:
                return unit * scale
        scale *= 10


def _bars(draw: ImageDraw.ImageDraw, report: Report, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
          small: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> None:
    reasons = report.deny_reasons().most_common(8)
    draw.text((LEFT, BARS_TOP - 30), "Deny reasons", fill=INK, font=font)
    if not reasons:
        draw.text((LEFT + 140, BARS_TOP), "no denials in this period", fill=INK, font=small)
        return
    label_w, right = 140, WIDTH - RIGHT
    peak = reasons[0][1]
    height = (BARS_BOTTOM - BARS_TOP) / len(reasons)
    draw.line([(LEFT + label_w, BARS_TOP), (LEFT + label_w, BARS_BOTTOM)], fill=INK, width=2)
    for i, (reason, n) in enumerate(reasons):
        top = BARS_TOP + i * height + 3
        end = LEFT + label_w + n / peak * (right - LEFT - label_w - 60)
        draw.rectangle([LEFT + label_w + 1, top, end, top + height - 6], fill=BAR)
        draw.text((LEFT + label_w - 8, top + (height - 6) / 2), reason[:22], fill=INK, font=small,
                  anchor="rm")
        draw.text((end + 6, top + (height - 6) / 2), str(n), fill=INK, font=small, anchor="lm")
