"""Pictures of codes: a QR symbol as a PNG, and the venue poster that hangs at an entrance.

segno computes the QR matrix (it picks alphanumeric mode for Base45 texts, which is why Base45 is
used); Pillow draws it with whole-pixel modules and a quiet zone, because a blurred symbol or one
without its margin is what makes phones and sentries misread. Returns images or PNG bytes; writing
files is the caller's job.
"""

from __future__ import annotations

import io

import segno
from PIL import Image, ImageDraw, ImageFont

QUIET_ZONE = 4  # modules of white margin the QR standard asks for
POSTER_SIZE = (1240, 1754)  # A4 portrait at 150 dpi


def code_image(text: str, *, scale: int = 8, border: int = QUIET_ZONE) -> Image.Image:
    """A black-on-white QR symbol: `scale` pixels per module, `border` modules of white margin."""
    if scale < 1 or border < 0:
        raise ValueError("scale must be at least 1 and border at least 0")
    qr = segno.make_qr(text, error="m")
    rows = [bytes(0 if dark else 255 for dark in row) for row in qr.matrix_iter(border=border)]
    image = Image.frombytes("L", (len(rows[0]), len(rows)), b"".join(rows))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def code_png(text: str, *, scale: int = 8, border: int = QUIET_ZONE) -> bytes:
    """PNG bytes of `code_image`."""
    return to_png(code_image(text, scale=scale, border=border))


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Box = tuple[float, float, float, float]


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: small bitmap font
        return ImageFont.load_default()


def _fitted_text(draw: ImageDraw.ImageDraw, text: str, width: int, size: int) -> tuple[Font, Box]:
    """The largest font up to `size` that fits `text` in `width` pixels, and the text's box."""
    while True:
        font = _font(size)
        box = draw.textbbox((0, 0), text, font=font)
        if box[2] - box[0] <= width or size <= 12:
            return font, box
        size = int(size * 0.9)


def _centred(draw: ImageDraw.ImageDraw, text: str, top: int, size: int, page_width: int) -> int:
    """Draw `text` centred on one line starting at `top`; return the y just below it."""
    font, box = _fitted_text(draw, text, page_width - 120, size)
    left = (page_width - (box[2] - box[0])) // 2 - box[0]
    draw.text((left, top - box[1]), text, fill=0, font=font)
    return top + int(box[3] - box[1])


def poster_image(
    code_text: str, *, venue_name: str, entrance_name: str, size: tuple[int, int] = POSTER_SIZE
) -> Image.Image:
    """The entrance poster: venue name, the venue code as large as fits, the entrance name."""
    width, height = size
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    margin = width // 20
    y = _centred(draw, venue_name, margin, width // 12, width) + margin // 2
    bottom_text_height = width // 14 + margin * 2
    room = min(width - 2 * margin, height - y - bottom_text_height)
    symbol = code_image(code_text, scale=1)
    symbol = code_image(code_text, scale=max(1, room // symbol.width))
    y += max(0, room - symbol.height) // 2  # centre the symbol in the room it has
    page.paste(symbol, ((width - symbol.width) // 2, y))
    y += symbol.height + margin // 2
    _centred(draw, entrance_name, y, width // 16, width)
    return page


def poster_png(
    code_text: str, *, venue_name: str, entrance_name: str, size: tuple[int, int] = POSTER_SIZE
) -> bytes:
    """PNG bytes of `poster_image`."""
    return to_png(
        poster_image(code_text, venue_name=venue_name, entrance_name=entrance_name, size=size)
    )
