"""The operator console's uploads: an editor posts an image; everyone may fetch it at its
/uploads/<name> address, cached for good (a name is never reused)."""
from bottle import FileUpload, request, static_file

from sprig.settings import Settings
from sprig.shop import uploads
from sprig.web.envelope import ApiError, ok
from sprig.web.routing import Routes, or_404

ROUTES = Routes()
PATH = '/api/v1/admin/uploads'
# Room for the multipart framing around the file (boundary lines, the part's headers with its
# file name): app.start_request lets this route's body be that much larger than the file.
MULTIPART_SLACK = 16 * 1024
TYPES = {'.png': 'image/png', '.jpg': 'image/jpeg', '.webp': 'image/webp'}
FOREVER = {'Cache-Control': 'public, max-age=31536000, immutable'}


def body_limit(settings: Settings) -> int:
    """The largest request body, in bytes, the upload route takes."""
    return settings.admin.upload_max_kb * 1024 + MULTIPART_SLACK


@ROUTES.post(PATH, 'Upload an image (banner, course cover, teacher photo)', auth='editor',
             statuses=(201, 400, 413))
def create_upload(settings: Settings) -> dict:
    """Form field `file`; its content decides what it is, never its name or declared type."""
    # One byte past the limit is enough for store() to know the file is too large.
    data = posted_file('file', settings.admin.upload_max_kb * 1024 + 1)
    try:
        url = uploads.store(data, settings)
    except uploads.Refused as exc:
        raise ApiError(400, 'invalid input: file', errors={'file': str(exc)}) from None
    return ok('uploaded', status=201, url=url)


def posted_file(field: str, limit: int) -> bytes:
    """Up to `limit` bytes of the multipart form's file `field`.

    :raise ApiError 400: the form has no such file (or is no multipart form).
    """
    try:
        upload = request.files.get(field)
        if upload is None:
            raise ApiError(400, f'invalid input: {field}', errors={field: 'required'})
        return upload.file.read(limit)
    finally:
        close_spooled()


def close_spooled() -> None:
    """Close the temporary files Bottle spooled a large body and each uploaded file to: it
    never does, and leaves them to the garbage collector."""
    form = request.environ.get('bottle.request.post')
    for _, value in form.allitems() if form is not None else ():
        if isinstance(value, FileUpload):
            value.file.close()
    body = request.environ.get('bottle.request.body')
    if body is not None:
        body.close()


@ROUTES.get('/uploads/<name>')
def get_upload(name: str, settings: Settings):
    path = or_404(uploads.path_of(name, settings), f'no upload {name}')
    return static_file(path.name, root=str(path.parent), mimetype=TYPES[path.suffix], headers=FOREVER)
