"""HTTP load from a separate process: wrk when the machine has it (it costs the shared
CPU least), else an asyncio client (aiohttp) in this process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

Request = tuple[str, bytes, dict[str, str]]  # path, body (b"" for GET), headers
REPLAY = Path(__file__).with_name("replay.lua")


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    tool: str
    # Requests past the end of the given list, sent again (so duplicates).
    repeated: int = 0
    p50_ms: float | None = None  # wrk's latency distribution, when wrk ran
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run(
    base: str, requests: list[Request], *, concurrency: int, seconds: float, wrk: bool = True
) -> Run:
    """Send `requests` with `concurrency` in flight: with wrk, in order for `seconds`;
    else each once. Any non-2xx response fails the run."""
    if wrk and shutil.which("wrk"):
        return _wrk(base, requests, concurrency=concurrency, seconds=seconds)
    return asyncio.run(_aiohttp(base, requests, concurrency=concurrency))


def _raw(base: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    host = urlsplit(base).netloc
    lines = [f"{'POST' if body else 'GET'} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _wrk(base: str, requests: list[Request], *, concurrency: int, seconds: float) -> Run:
    with tempfile.NamedTemporaryFile(prefix="wrk-", suffix=".bin") as file:
        for request in requests:
            raw = _raw(base, *request)
            file.write(b"%d\n" % len(raw) + raw)
        file.flush()
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{seconds:g}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(REPLAY),
                base,
            ],
            env={**os.environ, "WRK_REQUESTS": file.name},
            capture_output=True,
            text=True,
            check=True,
        )
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    count, value, unit = int(match[1]), float(match[2]), match[3]
    took = value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
    return Run(
        count,
        took,
        "wrk",
        repeated=max(0, count - len(requests)),
        p50_ms=_percentile(out, "50"),
        p99_ms=_percentile(out, "99"),
    )


def _percentile(out: str, which: str) -> float | None:
    """wrk --latency prints e.g. `     99%   12.34ms`."""
    match = re.search(rf"^\s*{which}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if not match:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]
    return float(match[1]) * scale


async def _aiohttp(base: str, requests: list[Request], *, concurrency: int) -> Run:
    queue = list(reversed(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as client:

        async def worker() -> None:
            while queue:
                path, body, headers = queue.pop()
                method = client.post(path, data=body, headers=headers) if body else client.get(path)
                async with method as response:
                    text = await response.text()
                    if response.status >= 300:
                        raise RuntimeError(f"{path}: {response.status} {text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Run(len(requests), time.perf_counter() - started, "aiohttp")
