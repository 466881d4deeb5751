"""Hostile input against a real server: does it stay responsive and light?

Starts `python -m app.cli serve` on a free port with a temporary data dir (or --data-dir), then
sends, one after the other: an oversized CSV (chunked, over TRAINBOARD_MAX_UPLOAD_BYTES), a 100 MB
CSV refused at line 2, a CSV field of 1 MB, a zip of twenty 4096x4096 PNGs (a pixel bomb), a zip
bomb (512 MiB of zeros in one member), 12,000x12,000 and 20,000x20,000 PNGs to predict (needs a finished run with
weights: --train makes one, else a run found in --data-dir; otherwise it is skipped, and said so),
a 32 MB JSON body, an architecture of 100,000 layers, and huge integers in paths.

Meanwhile a thread asks GET /healthz every 20 ms. Printed: each input's status code and answer
time, /healthz p50/p95/max latency during the attack, and the server's RSS before, at its peak
and after (psutil; the predictor and trainers are other processes, not counted).

    .venv/bin/python bench/hostile.py [--train] [--timeout 600] [--data-dir DIR]

Exits 124 when --timeout passes (the server is stopped by its pid either way).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402


def _poll_health(url: str, pid: int, interval: float, stopping, results) -> None:
    """The poller's own process: the bench's payload generation (GIL-bound) must not delay it."""
    latencies, samples, failures, peak_rss = [], [], 0, 0
    server = psutil.Process(pid)
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stopping.is_set():
            started = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the parent's
            try:
                ok = client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - started
            if ok:
                latencies.append(elapsed * 1000)
                samples.append((started, elapsed * 1000))
            else:
                failures += 1
            try:
                peak_rss = max(peak_rss, server.memory_info().rss)
            except psutil.Error:
                pass
            stopping.wait(max(0.0, interval - elapsed))
    results.put((latencies, samples, failures, peak_rss))


class HealthPoller:
    """GET /healthz every `interval` s from a process of its own; latencies in ms; also samples
    the server's peak RSS. Same use as a thread: start(), stopping.set(), join()."""

    def __init__(self, server: harness.Server, interval: float = 0.02) -> None:
        context = multiprocessing.get_context("spawn")
        self.stopping = context.Event()
        self._results = context.Queue()
        self._process = context.Process(target=_poll_health, daemon=True, args=(
            server.url, server.pid, interval, self.stopping, self._results))
        self.latencies: list[float] = []
        self.samples: list[tuple[float, float]] = []  # (time.perf_counter() at the start, ms)
        self.failures = 0
        self.peak_rss = 0

    def start(self) -> None:
        self._process.start()

    def join(self) -> None:
        self.latencies, self.samples, self.failures, self.peak_rss = self._results.get(timeout=60)
        self._process.join(timeout=10)


# --- hostile inputs -------------------------------------------------------------------------------

def png_of_size(width: int, height: int) -> bytes:
    """A valid grayscale PNG of one colour, built row by row: small on disk, huge decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def pixel_bomb_zip() -> bytes:
    big = png_of_size(4096, 4096)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for i in range(20):
            archive.writestr(f"{'ab'[i % 2]}/{i}.png", big)
    return buf.getvalue()


def zip_bomb(size: int = 512 << 20) -> bytes:
    buf = io.BytesIO()
    zeros = b"\0" * (1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("a/bomb.png", "w", force_zip64=True) as member:
            for _ in range(size // len(zeros)):
                member.write(zeros)
        archive.writestr("b/x.png", png_of_size(8, 8))
    return buf.getvalue()


def csv_refused_at_line_2(size: int = 100 << 20) -> Iterator[bytes]:
    yield b"a,b,label\nnot-a-number,1,x\n"
    block = b"0.123456,0.654321,y\n" * 50_000
    for _ in range(size // len(block)):
        yield block


def endless_csv(size: int) -> Iterator[bytes]:
    yield b"a,b,label\n"
    block = b"0.123456,0.654321,y\n" * 50_000
    for _ in range(size // len(block) + 1):
        yield block


def multipart(filename: str, chunks: Iterator[bytes], name: str = "hostile") -> Iterator[bytes]:
    """A multipart body streamed from chunks (no Content-Length: the server must count)."""
    boundary = b"hostilebenchboundary"
    yield (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\n' + name.encode()
           + b"\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="'
           + filename.encode() + b'"\r\nContent-Type: text/csv\r\n\r\n')
    yield from chunks
    yield b"\r\n--" + boundary + b"--\r\n"


MULTIPART = "multipart/form-data; boundary=hostilebenchboundary"


def find_finished_run(client: httpx.Client) -> int | None:
    runs = client.get("/api/runs", params={"status": "completed", "limit": 50}).json().get("items", [])
    for run in runs:
        names = {a["name"] for a in client.get(f"/api/runs/{run['id']}/artifacts").json()}
        if "weights" in names:
            return run["id"]
    return None


def train_tiny_run(client: httpx.Client, timeout: float = 180) -> int | None:
    body = {"dataset": "digits", "spec": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10,
                                                                           "activation": "softmax"}]},
            "config": {"epochs": 1, "batch_size": 64}}
    run = client.post("/api/runs", json=body).json()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/runs/{run['id']}").json()["status"]
        if status in ("completed", "failed", "cancelled"):
            return run["id"] if status == "completed" else None
        time.sleep(0.2)
    return None


# --- main -----------------------------------------------------------------------------------------

def main() -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], epilog=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=600, help="overall limit in seconds (default 600)")
    parser.add_argument("--data-dir", type=Path, default=None, help="use this data dir (default: a temporary one)")
    parser.add_argument("--train", action="store_true", help="train a tiny digits run first, for the predict input")
    args = parser.parse_args()

    temp = None if args.data_dir else tempfile.TemporaryDirectory(prefix="trainboard-hostile-")
    data_dir = args.data_dir or Path(temp.name) / "data"
    server = harness.Server(data_dir, {"TRAINBOARD_SLOTS": "1"})
    results: list[tuple[str, str, float, float, str]] = []  # label, status, seconds, healthz max ms, detail
    finished, timed_out = threading.Event(), threading.Event()

    def watchdog() -> None:
        if not finished.wait(args.timeout):
            timed_out.set()
            print(f"\ntimed out after {args.timeout:g} s; stopping the server (pid "
                  f"{server.process.pid if server.process else '-'})", flush=True)
            server.stop()
            os._exit(124)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        server.start()
        client = httpx.Client(base_url=server.url, timeout=120)
        run_id = find_finished_run(client)
        if run_id is None and args.train:
            print("training a tiny digits run for the predict input…", flush=True)
            run_id = train_tiny_run(client)
        predict_pngs = [png_of_size(side, side) for side in (12_000, 20_000)] if run_id is not None else []
        # Build every input before measuring, so the client's own work is not in the numbers.
        inputs: list[tuple[str, Callable[[], httpx.Response]]] = []
        over = int(os.environ.get("TRAINBOARD_MAX_UPLOAD_BYTES", 256 << 20)) + (16 << 20)
        inputs.append((f"CSV of {over >> 20} MiB, chunked (over the upload limit)", lambda: client.post(
            "/api/datasets", content=multipart("big.csv", endless_csv(over)), headers={"content-type": MULTIPART})))
        inputs.append(("CSV of 100 MiB refused at line 2", lambda: client.post(
            "/api/datasets", content=multipart("bad.csv", csv_refused_at_line_2()),
            headers={"content-type": MULTIPART})))
        long_field = b"a,label\n1,x\n" + b"7" * (1 << 20) + b",y\n"
        inputs.append(("CSV with a 1 MiB field", lambda: client.post(
            "/api/datasets", data={"name": "longfield"}, files={"file": ("long.csv", long_field)})))
        bomb_pixels = pixel_bomb_zip()
        inputs.append((f"zip of 20 PNGs 4096x4096 ({len(bomb_pixels) >> 10} KiB)", lambda: client.post(
            "/api/datasets", data={"name": "pixels"}, files={"file": ("pixels.zip", bomb_pixels)})))
        bomb = zip_bomb()
        inputs.append((f"zip bomb: 512 MiB of zeros ({len(bomb) >> 10} KiB)", lambda: client.post(
            "/api/datasets", data={"name": "bomb"}, files={"file": ("bomb.zip", bomb)})))
        for png in predict_pngs:
            side = struct.unpack(">I", png[16:20])[0]
            inputs.append((f"predict a {side}x{side} PNG ({len(png) >> 10} KiB), run {run_id}",
                           lambda png=png: client.post(f"/api/runs/{run_id}/predict",
                                                       files={"file": ("huge.png", png, "image/png")})))
        if not predict_pngs:
            results.append(("predict 12000x12000 and 20000x20000 PNGs", "skipped", 0.0, 0.0,
                            "no finished run with weights (pass --train or --data-dir)"))
        big_json = b'{"name": "x", "spec": {"layers": [' + b'{"type": "Flatten"},' * ((32 << 20) // 20) + b"{}]}}"
        inputs.append((f"JSON body of {len(big_json) >> 20} MiB", lambda: client.post(
            "/api/architectures", content=big_json, headers={"content-type": "application/json"})))
        # 100,000 layers is over the 512 KiB body limit (413); 25,000 compact ones pass it and reach
        # the layer cap (422).
        for count in (100_000, 25_000):
            layers = json.dumps({"spec": {"input_shape": [4], "layers": [{"type": "Flatten"}] * count}},
                                separators=(",", ":"))
            inputs.append((f"architecture of {count:,} layers ({len(layers) >> 10} KiB)",
                           lambda body=layers: client.post("/api/architectures/validate", content=body,
                                                           headers={"content-type": "application/json"})))
        for path in ("/api/runs/99999999999999999999999999", "/api/runs/-99999999999999999999/metrics",
                     "/api/datasets/digits/samples/99999999999999999999999.png", "/runs/1" + "9" * 400):
            inputs.append((f"GET {path[:48]}{'…' if len(path) > 48 else ''}", lambda p=path: client.get(p)))

        client.get("/api/datasets")
        client.get("/datasets")
        time.sleep(1.0)  # let the server settle after start-up and the warm-up requests
        rss_before = psutil.Process(server.pid).memory_info().rss
        poller = HealthPoller(server)
        poller.start()
        windows: list[tuple[float, float]] = []  # (start, end) of each input, time.perf_counter()
        for label, send in inputs:
            started = time.perf_counter()
            try:
                answer = send()
                status, note = str(answer.status_code), _detail(answer)
            except httpx.HTTPError as exc:
                status, note = "closed", f"{type(exc).__name__}: {exc}"[:100]
            windows.append((started, time.perf_counter()))
            results.append((label, status, windows[-1][1] - started, 0.0, note))
        time.sleep(0.5)
        poller.stopping.set()
        poller.join()  # the samples come back from the poller's process here
        for i, (started, ended) in enumerate(windows):
            during = [ms for at, ms in poller.samples if started - 0.02 <= at <= ended]
            results[i] = (*results[i][:3], max(during, default=0.0), results[i][4])
        rss_after = psutil.Process(server.pid).memory_info().rss
        client.close()
    except Exception:
        if timed_out.is_set():  # the watchdog stopped the server under us
            return 124
        raise
    finally:
        finished.set()
        server.stop()
        if temp is not None:
            temp.cleanup()

    print(f"\n{'input':58} {'status':>7} {'time':>8} {'healthz':>8}  answer")
    for label, status, seconds, health, note in results:
        shown = f"{seconds * 1000:6.0f}ms {health:6.0f}ms" if status != "skipped" else "       -        -"
        print(f"{label:58} {status:>7} {shown}  {note}")
    print("(healthz: the slowest /healthz answer that started while the input was being sent)")
    latencies = sorted(poller.latencies)
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        print(f"\n/healthz during the attack: {len(latencies)} answers, {poller.failures} failures; "
              f"p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")
        answering = [h for _, status, _, h, _ in results if status != "skipped"]
        print(f"slowest /healthz while the server was answering a hostile input: {max(answering, default=0):.1f} ms "
              "(the rest of the time this bench builds its next input on the same 2 cores)")
    print(f"server RSS: before {rss_before / 2**20:.0f} MiB, peak {max(poller.peak_rss, rss_after) / 2**20:.0f} MiB, "
          f"after {rss_after / 2**20:.0f} MiB")
    return 0


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail", "")
    except ValueError:
        detail = answer.text
    return str(detail).replace("\n", " ")[:110]


if __name__ == "__main__":
    sys.exit(main())
