"""Helpers of the UI tests: the real api-server app with a user's token, served over HTTP for Chromium,
and just enough PNG decoding to look at a screenshot's pixels."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def api_server_app():
    """The api-server's FastAPI app, built the way `airflow api-server` builds it (plugins included)."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    return create_app()


def token_for(role: str | None, username: str = "analyst") -> str:
    """A JWT for a simple-auth-manager user with ``role`` (viewer, user, op, admin)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def logged_in(app, token: str):
    """``app`` as a browser logged in to the Airflow UI sees it: every request carries the UI's JWT cookie."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    cookie = f"{COOKIE_NAME_JWT_TOKEN}={token}".encode()

    async def with_cookie(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "headers": [*scope["headers"], (b"cookie", cookie)]}
        await app(scope, receive, send)

    return with_cookie


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve ``app`` over HTTP on a free local port in a thread; yields the base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("the test api-server did not start in 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium() -> str:
    """The Chromium binary (.ci/run installs it); a test that needs it fails without it, never skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("Chromium is not installed: apt-get install -y chromium (.ci/run does it)")


def render(url: str, screenshot: Path, size: tuple[int, int] = (1400, 1400)) -> str:
    """Load ``url`` in headless Chromium, let its scripts run, save a screenshot; returns the DOM after them."""
    common = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=15000",
    ]
    profile = screenshot.parent / "chromium-profile"
    subprocess.run(
        [*common, f"--user-data-dir={profile}-shot", f"--screenshot={screenshot}", url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*common, f"--user-data-dir={profile}-dom", "--dump-dom", url],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    )
    return dom.stdout


def png_pixels(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG such as Chromium writes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), "only 8-bit RGB/RGBA screenshots are read"
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
                line[i] = (line[i] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows
