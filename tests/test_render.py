"""Rendered codes and posters must scan back to the exact text, with a clean quiet zone."""

import io

import numpy as np
import pytest
import segno
import zxingcpp
from codes_helpers import ISSUER, NOW
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from edge_sentry.codes import es1, render, vc1

KEY = Ed25519PrivateKey.generate()
TEXT = es1.issue(KEY, issuer=ISSUER, lifetime_s=60, iat=NOW)


def decoded(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def test_code_image_scans_back_to_the_text() -> None:
    assert decoded(render.code_image(TEXT)) == [TEXT]


@pytest.mark.parametrize(("scale", "border"), [(1, 4), (3, 4), (5, 2)])
def test_size_follows_scale_and_border(scale: int, border: int) -> None:
    modules = segno.make_qr(TEXT, error="m").symbol_size(scale=1, border=0)[0]
    image = render.code_image(TEXT, scale=scale, border=border)
    assert image.size == ((modules + 2 * border) * scale,) * 2


def test_quiet_zone_is_white_and_symbol_is_pure_black_and_white() -> None:
    scale, border = 4, 4
    pixels = np.asarray(render.code_image(TEXT, scale=scale, border=border))
    margin = scale * border
    assert set(np.unique(pixels)) == {0, 255}
    for band in (pixels[:margin], pixels[-margin:], pixels[:, :margin], pixels[:, -margin:]):
        assert (band == 255).all()
    assert pixels[margin, margin] == 0  # the finder pattern's corner starts right after the margin


def test_png_bytes_are_a_png_of_the_same_image() -> None:
    data = render.code_png(TEXT, scale=2)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.size == render.code_image(TEXT, scale=2).size
    assert decoded(image.convert("L")) == [TEXT]


@pytest.mark.parametrize(("scale", "border"), [(0, 4), (2, -1)])
def test_nonsense_geometry_is_refused(scale: int, border: int) -> None:
    with pytest.raises(ValueError):
        render.code_image(TEXT, scale=scale, border=border)


def test_poster_scans_to_the_venue_code_and_carries_both_names() -> None:
    root = Ed25519PrivateKey.generate()
    text = vc1.issue(root, site="s1", venue="arena", entrance="north", name="The Arena")
    image = render.poster_image(text, venue_name="The Arena", entrance_name="North gate")
    assert image.size == render.POSTER_SIZE
    (found,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert found.text == text
    top = min(found.position.top_left.y, found.position.top_right.y)
    bottom = max(found.position.bottom_left.y, found.position.bottom_right.y)
    dark_rows = np.flatnonzero((np.asarray(image) < 128).any(axis=1))
    # Ink above the symbol (the venue name) and below it (the entrance name).
    assert (dark_rows < top - 10).any()
    assert (dark_rows > bottom + 10).any()
    assert bottom - top > image.width // 2  # the code is large


def test_a_long_venue_name_is_shrunk_to_fit_the_page() -> None:
    root = Ed25519PrivateKey.generate()
    text = vc1.issue(root, site="s", venue="v", entrance="e", name="n")
    long_name = "The Very Long Name Of A Municipal Multi-Purpose Arena And Conference Centre"
    image = render.poster_image(text, venue_name=long_name, entrance_name="East")
    pixels = np.asarray(image)
    title_band = pixels[:150]
    dark_columns = np.flatnonzero((title_band < 128).any(axis=0))
    assert dark_columns.size and dark_columns[0] > 0 and dark_columns[-1] < image.width - 1
    assert decoded(image) == [text]
