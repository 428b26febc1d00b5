"""Screenshots of a live page in headless Chromium over the DevTools protocol, in real time.

Chromium's one-shot ``--screenshot`` runs the page on *virtual* time: an app that fetches a
file and then shows it in an iframe made from a blob (MLflow's artifact view) is shot before
the iframe paints. Here the page runs in real time and is shot repeatedly until ``ready``
accepts a shot (or the deadline passes, the last shot returned): what a user waiting a few
seconds sees. Uses aiohttp's websocket client (a Ray dependency), nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["shoot_until"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _page_socket(port: int, proc: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("chromium's DevTools endpoint did not come up")
        time.sleep(0.3)


async def _shoot(ws_url: str, url: str, ready: Callable[[Any], bool], timeout_s: float,
                 every_s: float) -> tuple[bytes, bool]:
    import aiohttp
    from PIL import Image

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url,
                                                                      max_msg_size=0) as ws:
        ids = iter(range(1, 1 << 30))

        async def call(method: str, **params: Any) -> dict[str, Any]:
            mid = next(ids)
            await ws.send_json({"id": mid, "method": method, "params": params})
            while True:
                msg = await ws.receive_json()
                if msg.get("id") == mid:
                    return dict(msg.get("result", {}))

        await call("Page.enable")
        await call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while True:
            await asyncio.sleep(every_s)
            png = base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])
            with Image.open(io.BytesIO(png)) as img:
                ok = ready(img)
            if ok or time.monotonic() > deadline:
                return png, ok


def shoot_until(chromium: str, url: str, out: Path, ready: Callable[[Any], bool], *,
                profile: Path, width: int = 1400, height: int = 1400, timeout_s: float = 120,
                every_s: float = 2.0) -> bool:
    """Open ``url``; shoot every ``every_s`` seconds until ``ready(PIL image)``; write the last
    shot to ``out``; whether it was ready."""
    port = _free_port()
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", f"--user-data-dir={profile}",
         f"--remote-debugging-port={port}", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ws_url = _page_socket(port, proc, 60)
        png, ok = asyncio.run(_shoot(ws_url, url, ready, timeout_s, every_s))
        out.write_bytes(png)
        return ok
    finally:
        proc.kill()
        proc.wait(timeout=30)
