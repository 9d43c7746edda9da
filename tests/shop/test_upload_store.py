"""Uploads: real PNG, JPEG, GIF and WebP files are stored re-encoded without their metadata; markup,
broken files, oversized files and decompression bombs are refused and leave nothing behind;
names cannot be guessed and path_of serves only names of that form."""
import io
import os
import struct
import zlib

import pytest
from conftest import make_settings
from PIL import Image, PngImagePlugin

from sprig.shop import uploads
from sprig.shop.uploads import Refused, path_of, store

NOT_READ = 'not an image this site reads: upload a PNG, JPEG or WebP'
TOO_MANY = 'the image has more than 40 million pixels'


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, SPRIG_ADMIN_UPLOAD_MAX_KB='64')


def encode(image: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def stored(url: str, settings) -> Image.Image:
    return Image.open(path_of(url.removeprefix('/uploads/'), settings))


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR alone: the size claimed, no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IEND', b''))


def test_a_png_stays_a_png_with_its_transparency_and_without_its_text(settings):
    image = Image.new('RGBA', (40, 30), (255, 0, 0, 0))
    image.putpixel((1, 1), (0, 0, 255, 255))
    text = PngImagePlugin.PngInfo()
    text.add_text('Author', 'Ada at 12 Home Street')
    url = store(encode(image, 'PNG', pnginfo=text), settings)
    assert url.startswith('/uploads/') and url.endswith('.png')
    with stored(url, settings) as kept:
        assert (kept.format, kept.size, kept.mode) == ('PNG', (40, 30), 'RGBA')
        assert kept.getpixel((0, 0))[3] == 0 and kept.getpixel((1, 1)) == (0, 0, 255, 255)
        assert 'Author' not in kept.info


def test_a_jpeg_loses_its_exif_and_is_turned_upright(settings):
    exif = Image.Exif()
    exif[0x010F] = 'PhoneMaker'  # Make
    exif[0x0112] = 6  # Orientation: the camera was turned; shown rotated 90°
    url = store(encode(Image.new('RGB', (40, 20), 'green'), 'JPEG', exif=exif, quality=95), settings)
    assert url.endswith('.jpg')
    with stored(url, settings) as kept:
        assert kept.format == 'JPEG' and kept.size == (20, 40)
        assert 'exif' not in kept.info and not kept.getexif()


def test_a_gif_is_stored_as_a_png_of_its_first_frame_and_a_webp_stays_webp(settings):
    frames = [Image.new('P', (10, 10), colour) for colour in (1, 2)]
    gif = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])
    with stored(store(gif, settings), settings) as kept:
        assert kept.format == 'PNG' and not getattr(kept, 'is_animated', False)
    with stored(store(encode(Image.new('RGB', (10, 10)), 'WEBP'), settings), settings) as kept:
        assert kept.format == 'WEBP'


@pytest.mark.parametrize(('data', 'message'), [
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
     'SVG is not accepted: upload a PNG, JPEG or WebP'),
    (b'\xef\xbb\xbf  <svg onload="alert(1)"/>', 'SVG is not accepted: upload a PNG, JPEG or WebP'),
    (b'<!DOCTYPE html><html><script>alert(1)</script></html>',
     'HTML and XML are not images: upload a PNG, JPEG or WebP'),
    (b'', NOT_READ),
    (b'GIF89a' + b'\x00' * 4, NOT_READ),
    (b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n', NOT_READ),  # never handed to Ghostscript
    (encode(Image.new('RGB', (10, 10)), 'BMP'), NOT_READ),  # a format we do not take
    (png_header(100_000, 100_000), TOO_MANY),  # Pillow's own limit, in Image.open
    (png_header(8000, 6000), TOO_MANY),  # ours: 48 million, under Pillow's
])
def test_what_is_not_an_image_we_take_is_refused_saying_why(settings, data, message):
    with pytest.raises(Refused) as refused:
        store(data, settings)
    assert str(refused.value) == message
    assert not settings.admin.upload_dir.exists() or not os.listdir(settings.admin.upload_dir)


def test_a_broken_or_truncated_image_is_refused(settings):
    image = Image.frombytes('RGB', (64, 64), os.urandom(64 * 64 * 3))  # noise: it does not compress
    for data in (encode(image, 'PNG'), encode(image, 'JPEG')):
        with pytest.raises(Refused, match=NOT_READ):
            store(data[:len(data) // 2], settings)
    png = bytearray(encode(image, 'PNG'))
    png[60] ^= 0xFF  # inside the pixel data: its checksum no longer matches
    with pytest.raises(Refused, match=NOT_READ):
        store(bytes(png), settings)


def test_a_real_bomb_small_on_disk_is_refused(settings):
    data = encode(Image.new('1', (7000, 6000)), 'PNG', optimize=True)  # 42 million pixels, all one colour
    assert len(data) < 64 * 1024
    with pytest.raises(Refused, match=TOO_MANY):
        store(data, settings)


def test_a_file_over_the_limit_is_refused_before_it_is_decoded(settings):
    data = encode(Image.frombytes('RGB', (100, 100), os.urandom(30_000)), 'PNG')
    assert 30_000 < len(data) < 64 * 1024
    store(data, settings)
    with pytest.raises(Refused, match='the file is larger than 64 KB'):
        store(data + b'\x00' * (64 * 1024 - len(data) + 1), settings)


def test_names_are_unguessable_and_the_directory_private(settings):
    data = encode(Image.new('RGB', (5, 5)), 'PNG')
    names = {store(data, settings).removeprefix('/uploads/') for _ in range(20)}
    assert len(names) == 20 and all(uploads.NAME.fullmatch(name) for name in names)
    assert sorted(os.listdir(settings.admin.upload_dir)) == sorted(names)  # no temporary file left
    assert settings.admin.upload_dir.stat().st_mode & 0o777 == 0o700


def test_path_of_knows_only_names_of_the_form_stored(settings):
    name = store(encode(Image.new('RGB', (5, 5)), 'PNG'), settings).removeprefix('/uploads/')
    assert path_of(name, settings) == settings.admin.upload_dir / name
    (settings.admin.upload_dir.parent / 'secret.png').write_bytes(b'x')
    for bad in ('../x', 'abc', '', '../secret.png', f'../uploads/{name}', f'{name}\n', f'{name}/', name[:-4],
                name.replace('.png', '.svg'), name.replace('.png', '.html'), '/etc/passwd', f'a{name}',
                'A' * 24 + '.png'):  # the right form, but not stored
        assert path_of(bad, settings) is None, bad


def test_a_failed_write_leaves_no_file_at_all(settings, monkeypatch):
    def full_disk(source, target):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'replace', full_disk)
    with pytest.raises(OSError, match='No space'):
        store(encode(Image.new('RGB', (5, 5)), 'PNG'), settings)
    assert os.listdir(settings.admin.upload_dir) == []
