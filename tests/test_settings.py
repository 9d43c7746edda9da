"""Settings: defaults, the overlay file, environment overrides, and a clear line for each bad value."""
import stat
import subprocess

import pytest
from conftest import huey_consumer, process_env, python

from sprig.settings import PROJECT_DIR, SettingsError, load_settings


def test_defaults_live_in_the_data_directory(tmp_path):
    s = load_settings({'SPRIG_DATA_DIR': str(tmp_path)})
    assert (s.app.host, s.app.port, s.app.debug, s.app.threads) == ('127.0.0.1', 8080, False, 8)
    assert s.database.url == f'sqlite:///{tmp_path}/sprig.db'
    assert s.queue.url == f'sqlite:///{tmp_path}/queue.db'
    assert s.cache.url == f'sqlite:///{tmp_path}/cache.db'
    assert (s.queue.name, s.queue.workers, s.cache.prefix) == ('sprig', 2, 'sprig:')


def test_generated_secret_is_kept_private_and_reused(tmp_path):
    first = load_settings({'SPRIG_DATA_DIR': str(tmp_path)}).app.secret_key
    assert len(first) >= 32
    assert load_settings({'SPRIG_DATA_DIR': str(tmp_path)}).app.secret_key == first
    assert stat.S_IMODE((tmp_path / 'secret_key').stat().st_mode) == 0o600
    assert first not in repr(load_settings({'SPRIG_DATA_DIR': str(tmp_path)}))


def test_overlay_file_changes_only_its_keys(tmp_path):
    overlay = tmp_path / 'site.ini'
    overlay.write_text('[app]\nport = 9000\n[cache]\nurl = memory://\n')
    s = load_settings({'SPRIG_CONFIG': str(overlay), 'SPRIG_DATA_DIR': str(tmp_path)})
    assert (s.app.port, s.cache.url, s.app.host) == (9000, 'memory://', '127.0.0.1')


def test_environment_beats_the_file(tmp_path):
    overlay = tmp_path / 'site.ini'
    overlay.write_text('[app]\nport = 9000\n')
    s = load_settings({'SPRIG_CONFIG': str(overlay), 'SPRIG_DATA_DIR': str(tmp_path),
                       'SPRIG_APP_PORT': '9100', 'SPRIG_QUEUE_URL': 'redis://127.0.0.1:6379/3',
                       'SPRIG_APP_BASE_URL': 'https://shop.example/'})
    assert (s.app.port, s.queue.url, s.app.base_url) == (9100, 'redis://127.0.0.1:6379/3',
                                                         'https://shop.example')


def test_relative_paths_follow_the_project_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({'SPRIG_DATA_DIR': str(tmp_path), 'SPRIG_DATABASE_URL': 'sqlite:///var/x.db'})
    assert s.database.url == f'sqlite:///{PROJECT_DIR}/var/x.db'
    # A secret given, so that none is generated into PROJECT_DIR/elsewhere.
    relative = load_settings({'SPRIG_DATA_DIR': 'elsewhere', 'SPRIG_APP_SECRET_KEY': 'k' * 40})
    assert relative.app.data_dir == PROJECT_DIR / 'elsewhere'
    assert not (PROJECT_DIR / 'elsewhere').exists()


@pytest.mark.parametrize('env, message', [
    ({'SPRIG_DATA_DIR': ''}, '[app] data_dir: empty; name a directory'),
    ({'SPRIG_APP_PORT': 'abc'}, "[app] port: 'abc' is not a whole number"),
    ({'SPRIG_APP_PORT': '70000'}, '[app] port: 70000 is out of range (from 1 to 65535)'),
    ({'SPRIG_QUEUE_WORKERS': '0'}, '[queue] workers: 0 is out of range'),
    ({'SPRIG_APP_DEBUG': 'maybe'}, "[app] debug: 'maybe' is not true or false"),
    ({'SPRIG_QUEUE_URL': 'amqp://localhost'}, "[queue] url: unknown backend 'amqp'"),
    ({'SPRIG_CACHE_URL': 'memcached://x'}, "[cache] url: unknown backend 'memcached'"),
    ({'SPRIG_DATABASE_URL': 'sqlite://app.db'}, "[database] url: 'sqlite://app.db' names no file"),
    ({'SPRIG_DATABASE_URL': 'postgresql://db:port/x'}, 'has a bad port'),
    ({'SPRIG_DATABASE_URL': 'postgresql:///x'}, 'names no host'),
    ({'SPRIG_DATABASE_URL': 'postgresql://db.host/'}, 'names no database'),
    ({'SPRIG_DATABASE_URL': 'postgresql://db.host/app'}, '[app] secret_key: missing'),
    ({'SPRIG_APP_SECRET_KEY': 'changeme'}, '[app] secret_key: too weak'),
    ({'SPRIG_CACHE_URL': 'memory://', 'SPRIG_QUEUE_URL': 'redis://h:6379/0'}, '[cache] url: memory://'),
    ({'SPRIG_APP_BASE_URL': 'ftp://x'}, "[app] base_url: 'ftp://x' is not an http"),
    ({'SPRIG_QUEUE_NAME': 'a b'}, '[queue] name:'),
    ({'SPRIG_APP_PROT': '80'}, 'SPRIG_APP_PROT: no such setting'),
    ({'SPRIG_CONFIG': '/nonexistent.ini'}, 'SPRIG_CONFIG: no such file'),
])
def test_each_bad_value_names_its_key(tmp_path, env, message):
    with pytest.raises(SettingsError) as caught:
        load_settings({'SPRIG_DATA_DIR': str(tmp_path), **env})
    assert message in str(caught.value)
    assert '\n' not in str(caught.value)


def test_overlay_with_an_unknown_key_is_refused(tmp_path):
    overlay = tmp_path / 'site.ini'
    overlay.write_text('[app]\nprot = 1\n')
    with pytest.raises(SettingsError, match=r'unknown setting \[app\] prot'):
        load_settings({'SPRIG_CONFIG': str(overlay), 'SPRIG_DATA_DIR': str(tmp_path)})


def test_debug_allows_a_short_secret(tmp_path):
    s = load_settings({'SPRIG_DATA_DIR': str(tmp_path), 'SPRIG_APP_DEBUG': 'yes',
                       'SPRIG_APP_SECRET_KEY': 'dev'})
    assert s.app.secret_key == 'dev'


@pytest.mark.parametrize('command', [python('app.py', '--port', '8999'), huey_consumer()],
                         ids=['serve', 'huey_consumer'])
def test_start_up_stops_with_one_line_not_a_traceback(tmp_path, command):
    env = process_env(tmp_path, SPRIG_APP_PORT='abc')
    done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "sprig: bad setting: [app] port: 'abc' is not a whole number" in done.stderr
    assert 'Traceback' not in done.stderr


def test_web_processes_default_to_one_per_core_with_a_shared_cache(tmp_path):
    import os
    cores = len(os.sched_getaffinity(0))
    assert load_settings({'SPRIG_DATA_DIR': str(tmp_path)}).app.processes == cores
    assert load_settings({'SPRIG_DATA_DIR': str(tmp_path), 'SPRIG_CACHE_URL': 'memory://'}).app.processes == 1
    assert load_settings({'SPRIG_DATA_DIR': str(tmp_path), 'SPRIG_APP_PROCESSES': '3'}).app.processes == 3
