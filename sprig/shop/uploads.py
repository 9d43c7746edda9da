"""The operator console's uploads (banner images, course covers, teacher photos): checked by their
content, re-encoded without their metadata, stored under names nobody can guess.

Nothing is stored as sent. Only what Pillow decodes as a PNG, JPEG, GIF or WebP is accepted, and
the stored file is our own encoding of its pixels, so neither a file that is also HTML or a
script (a polyglot) nor a camera's EXIF (GPS position, serial number) survives. The name or type
the browser declared is never read.
"""
import io
import os
import re
import secrets
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from sprig.settings import Settings

MAX_PIXELS = 40_000_000  # a 40-megapixel photo; more is a decompression bomb, not a banner
# The only formats decoded at all: Pillow's other readers are never given an upload (some are
# rarely exercised, and EPS would run Ghostscript).
READ = ('PNG', 'JPEG', 'GIF', 'WEBP')
# What each is stored as. The JPEG reader gives MPO for a camera's JPEG with a second picture.
STORED_AS = {'PNG': 'PNG', 'GIF': 'PNG', 'JPEG': 'JPEG', 'MPO': 'JPEG', 'WEBP': 'WEBP'}
# What Pillow raises for input it cannot read: the list its own fuzzing tests accept (anything
# else is a bug, in Pillow or here, and should be a logged 500, not a polite refusal).
UNREADABLE = (OSError, SyntaxError, ValueError, MemoryError, NotImplementedError)
EXTENSIONS = {'PNG': 'png', 'JPEG': 'jpg', 'WEBP': 'webp'}
SAVE_OPTIONS = {'PNG': {}, 'JPEG': {'quality': 85}, 'WEBP': {'quality': 85}}
NAME = re.compile(r'[A-Za-z0-9_-]{24}\.(png|jpg|webp)')  # token_urlsafe(18) is 24 characters
RGB_MODES = ('RGB', 'RGBA', 'P', 'PA')  # whose ICC profile, if any, still fits after conversion


class Refused(ValueError):
    """An upload that is not stored; str() says why, for the person who sent it."""


def store(data: bytes, settings: Settings) -> str:
    """Store a re-encoding of the image in data; the site path it is served at (/uploads/<name>).

    :raise Refused: larger than [admin] upload_max_kb, not an image we read, or too many pixels.
    """
    if len(data) > settings.admin.upload_max_kb * 1024:
        raise Refused(f'the file is larger than {settings.admin.upload_max_kb} KB')
    image = decoded(data)
    kind = STORED_AS[image.format]
    name = f'{secrets.token_urlsafe(18)}.{EXTENSIONS[kind]}'
    write(settings.admin.upload_dir / name, encoded(image, kind))
    return f'/uploads/{name}'


def path_of(name: str, settings: Settings) -> Path | None:
    """The stored file a served name is; None for a name not of the form store() gives (so never
    a path into another directory) and for one that is not stored."""
    if not NAME.fullmatch(name):
        return None
    path = settings.admin.upload_dir / name
    return path if path.is_file() else None


def decoded(data: bytes) -> Image.Image:
    """data's image, its first frame decoded. :raise Refused: markup, unreadable, or too many pixels."""
    head = data[:4096].lstrip(b'\xef\xbb\xbf \t\r\n').lower()
    if head.startswith(b'<'):  # Pillow would not read it either; this says why
        raise Refused('SVG is not accepted: upload a PNG, JPEG or WebP' if b'<svg' in head
                      else 'HTML and XML are not images: upload a PNG, JPEG or WebP')
    try:
        with Image.open(io.BytesIO(data), formats=READ) as probe:
            if probe.width * probe.height > MAX_PIXELS:  # read from the header: nothing decoded yet
                raise Refused(f'the image has more than {MAX_PIXELS // 1_000_000} million pixels')
            probe.verify()  # what can be checked without decoding (a PNG's checksums)
        image = Image.open(io.BytesIO(data), formats=READ)  # verify() leaves probe unusable
        image.load()  # a truncated or corrupt file fails here
    except Refused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own check, in open(), for sizes far past ours (the warning, where warnings are errors)
        raise Refused(f'the image has more than {MAX_PIXELS // 1_000_000} million pixels') from None
    except UNREADABLE:
        raise Refused('not an image this site reads: upload a PNG, JPEG or WebP') from None
    return image


def encoded(image: Image.Image, kind: str) -> bytes:
    """image's pixels, upright, as a kind file, with no EXIF, XMP or text chunks. The ICC profile
    stays where it still fits: it says what the colours are (a phone's wide-gamut photo would
    look dull without it), not who took the picture."""
    upright = ImageOps.exif_transpose(image)  # the orientation goes with the EXIF: apply it first
    alpha = upright.mode in ('RGBA', 'LA', 'PA') or 'transparency' in upright.info
    pixels = upright.convert('RGBA' if alpha and kind != 'JPEG' else 'RGB')
    icc = upright.info.get('icc_profile') if upright.mode in RGB_MODES else None
    pixels.info.clear()  # convert() copies the metadata along
    out = io.BytesIO()
    pixels.save(out, kind, **SAVE_OPTIONS[kind], **({'icc_profile': icc} if icc else {}))
    return out.getvalue()


def write(path: Path, data: bytes) -> None:
    """Afterwards path holds data, or does not exist: never part of it (a temporary file in the
    same directory, then renamed over it). The directory is made, private, if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix='.', suffix='.part')
    try:
        with os.fdopen(handle, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
