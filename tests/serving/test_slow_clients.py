"""Slow clients against a real `python app.py`: they cannot take the site down, and one that
takes too long to send its request is cut off."""
import socket
import threading
import time
import urllib.request

from conftest import free_port, process_env, python, wait_http

SLOW = 120  # more than Waitress's default connection limit (100)


def slow_client(port: int, stop: threading.Event, sockets: list) -> None:
    """Open a connection and send one header line every 2 s, never finishing the request."""
    try:
        sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    except OSError:
        return
    sockets.append(sock)
    sock.sendall(b'GET /api/v1/health HTTP/1.1\r\nHost: x\r\n')
    while not stop.wait(2):
        try:
            sock.sendall(b'X-Slow: 1\r\n')
        except OSError:
            return


def served_within(url: str, seconds: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=seconds) as reply:
            return reply.status == 200
    except OSError:
        return False


def start(spawn, tmp_path, **env) -> int:
    port = free_port()
    server = spawn(python('app.py', '--port', str(port)), process_env(tmp_path, **env), 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    return port


def test_slow_clients_do_not_keep_ordinary_ones_out(spawn, tmp_path):
    port = start(spawn, tmp_path)
    stop, sockets = threading.Event(), []
    attackers = [threading.Thread(target=slow_client, args=(port, stop, sockets), daemon=True) for _ in range(SLOW)]
    try:
        for attacker in attackers:
            attacker.start()
        time.sleep(3)  # every slow client connected and trickling
        assert len(sockets) == SLOW
        started = time.monotonic()
        assert all(served_within(f'http://127.0.0.1:{port}/api/v1/home/banners', 5) for _ in range(6))
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


def test_a_client_too_slow_to_send_its_request_is_cut_off(spawn, tmp_path):
    port = start(spawn, tmp_path, SPRIG_APP_REQUEST_TIMEOUT='3')
    stop, sockets = threading.Event(), []
    trickle = threading.Thread(target=slow_client, args=(port, stop, sockets), daemon=True)
    trickle.start()
    try:
        time.sleep(0.5)
        sock = sockets[0]
        sock.settimeout(8)
        started = time.monotonic()
        assert sock.recv(100) == b''  # closed by the server, though the client kept sending
        assert 2.5 < time.monotonic() - started + 0.5 < 6
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
