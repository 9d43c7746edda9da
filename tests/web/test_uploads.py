"""The upload route through the app: editors and admins upload, others are refused; the stored
image is served with its type and cached for good; the upload route takes bodies up to
upload_max_kb while every other route keeps max_body_kb; no upload answers a 500."""
import io
import os

import pytest
import webtest
from conftest import bearer, make_settings
from PIL import Image

import app as sprig_app
from models import User, database
from sprig.db.schema import create_tables
from sprig.shop.accounts import hash_password, save_admin
from sprig.web.api.uploads import MULTIPART_SLACK

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

UPLOADS = '/api/v1/admin/uploads'
PASSWORDS = {'admin_1': 'admin password 1', 'editor_1': 'editor password 1', 'user_one': 'user password 1'}


def make_shop(tmp_path, **env) -> webtest.TestApp:
    """The app with an admin, an editor and a user."""
    application = sprig_app.create_app(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', **env))
    create_tables()
    with database.connection_context():
        save_admin('admin_1', PASSWORDS['admin_1'])
        save_admin('editor_1', PASSWORDS['editor_1'], role='editor')
        User.create(username='user_one', mobile='13800138001', password_hash=hash_password(PASSWORDS['user_one']))
    return webtest.TestApp(application)


@pytest.fixture
def shop(tmp_path) -> webtest.TestApp:
    return make_shop(tmp_path)


def signed_in(client: webtest.TestApp, name: str) -> dict:
    return bearer(client, name, PASSWORDS[name])


def png(width: int = 20, height: int = 10, noise: bool = False) -> bytes:
    """A PNG; of noise, it is about width * height * 3 bytes (noise does not compress)."""
    image = (Image.frombytes('RGB', (width, height), os.urandom(width * height * 3)) if noise
             else Image.new('RGB', (width, height), 'orange'))
    out = io.BytesIO()
    image.save(out, 'PNG')
    return out.getvalue()


def upload(client: webtest.TestApp, data: bytes, headers: dict, status: int = 201,
           filename: str = 'photo.png', content_type: str = 'image/png') -> webtest.TestResponse:
    return client.post(UPLOADS, upload_files=[('file', filename, data, content_type)], headers=headers,
                       status=status)


@pytest.mark.parametrize('name', ['editor_1', 'admin_1'])
def test_staff_upload_and_the_image_is_served_cached_for_good(shop, name):
    answer = upload(shop, png(), signed_in(shop, name))
    assert answer.json['code'] == 100 and answer.json['msg'] == 'uploaded'
    url = answer.json['url']
    assert url.startswith('/uploads/') and url.endswith('.png')
    served = shop.get(url)
    assert served.content_type == 'image/png'
    assert served.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
    assert served.headers['X-Content-Type-Options'] == 'nosniff'
    assert Image.open(io.BytesIO(served.body)).size == (20, 10)


def test_a_user_is_refused_and_a_visitor_asked_to_sign_in(shop):
    assert upload(shop, png(), signed_in(shop, 'user_one'), 403).json['msg'] == 'editors and admins only'
    assert upload(shop, png(), {}, 401).json['code'] == 401


@pytest.mark.parametrize(('data', 'filename', 'content_type', 'message'), [
    (b'<!DOCTYPE html><html><script>alert(document.cookie)</script></html>', 'cat.png', 'image/png',
     'HTML and XML are not images: upload a PNG, JPEG or WebP'),
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', 'logo.svg', 'image/svg+xml',
     'SVG is not accepted: upload a PNG, JPEG or WebP'),
    (png()[:40], 'cut.png', 'image/png', 'not an image this site reads: upload a PNG, JPEG or WebP'),
])
def test_what_is_not_an_image_is_refused_whatever_its_name_says(shop, data, filename, content_type, message):
    answer = upload(shop, data, signed_in(shop, 'editor_1'), 400, filename, content_type)
    assert answer.json['errors'] == {'file': message}


def test_a_missing_file_or_a_malformed_form_is_a_400(shop):
    headers = signed_in(shop, 'editor_1')
    for answer in (shop.post(UPLOADS, {'file': 'not a file'}, headers=headers, status=400),
                   shop.post(UPLOADS, upload_files=[('picture', 'a.png', png())], headers=headers, status=400),
                   shop.post_json(UPLOADS, {'file': 'x'}, headers=headers, status=400)):
        assert answer.json['msg'] == 'invalid input: file' and answer.json['errors'] == {'file': 'required'}
    for content_type in ('multipart/form-data', 'multipart/form-data; boundary=x'):  # no boundary; no end
        malformed = shop.post(UPLOADS, b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"',
                              headers={**headers, 'Content-Type': content_type}, status=400)
        assert malformed.json['msg'].startswith('MultipartError')


def test_unknown_names_are_not_found(shop):
    upload(shop, png(), signed_in(shop, 'editor_1'))
    for name in ('A' * 24 + '.png', '..%2f..%2fconfig.ini', 'abc', '.%2e'):
        shop.get(f'/uploads/{name}', status=404)


def test_only_the_upload_route_takes_a_body_larger_than_max_body_kb(shop):
    headers = signed_in(shop, 'editor_1')
    big = shop.post_json('/api/v1/user/login', {'username': 'x' * 300 * 1024, 'password': 'y'}, status=413)
    assert big.json['msg'] == 'request body too large (limit 256 KB)'
    photo = png(600, 600, noise=True)
    assert len(photo) > 1024 * 1024
    url = upload(shop, photo, headers).json['url']
    assert shop.get(url).content_length > 1024 * 1024


def test_a_file_over_upload_max_kb_is_refused_clearly(shop):
    headers = signed_in(shop, 'editor_1')
    limit = 2048 * 1024  # config.ini's upload_max_kb
    just_over = png() + b'\x00' * (limit + 1 - len(png()))  # the size is checked before the content
    assert upload(shop, just_over, headers, 400).json['errors'] == {'file': 'the file is larger than 2048 KB'}
    far_over = upload(shop, b'\x00' * (limit + MULTIPART_SLACK), headers, 413)
    assert far_over.json['msg'] == f'request body too large (limit {2048 + MULTIPART_SLACK // 1024} KB)'


def test_the_document_describes_the_route(shop):
    operation = shop.get('/api/v1/openapi.json').json['paths'][UPLOADS]['post']
    assert operation['tags'] == ['editor']
    assert {'201', '400', '401', '403', '413'} <= set(operation['responses'])
