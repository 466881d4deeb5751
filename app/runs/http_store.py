"""HttpRunStore: the run store (app/runs/store.py) over the ingest API (app/api/ingest.py).

For trainers that cannot (or should not) reach the database, and for users' own scripts
(app/client.py). Events get the trainer's own seq (1, 2, 3… per run) as they are appended and stay
in memory until the server has acknowledged them, so a server that restarts mid-run loses nothing:
every call retries connection errors, timeouts and 5xx answers with exponential backoff, sending
the same seqs again (the server stores each once). `append` and `heartbeat` never raise for a
server that is away: what is unsent goes with the next call. The final report first sends
everything left, then the status, retrying until the server answers or `report_deadline_s` passes.
"""

from __future__ import annotations

import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from app.runs.store import RunOrder

MAX_BATCH = 1000  # events per request (the body limit is 1 MiB)
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 2.0


class IngestRefused(RuntimeError):
    """The server refused a request for good (4xx other than a gap): retrying cannot help."""


def _result_fields(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    if isinstance(result, dict):
        return result
    return {"train_time_s": result.train_time_s, "peak_memory_bytes": result.peak_memory_bytes or None,
            "training_memory_bytes": result.training_memory_bytes}


class HttpRunStore:
    """RunStore over HTTP for one run, authenticated by the run's ingest token."""

    remote = True  # its trainer shares no disk with the server (app/worker.py fetches and uploads files)

    def __init__(self, server_url: str, run_id: int, token: str, *, timeout_s: float = 10.0,
                 send_deadline_s: float = 2.0, report_deadline_s: float = 300.0, pid: int | None = None):
        self.run_id = run_id
        self.server_url = server_url.rstrip("/")
        self._client = httpx.Client(base_url=self.server_url, timeout=timeout_s,
                                    headers={"Authorization": f"Bearer {token}"})
        self._prefix = f"/api/ingest/runs/{run_id}"
        self.send_deadline_s = send_deadline_s
        self.report_deadline_s = report_deadline_s
        self.trainer_pid = pid
        self._lock = threading.RLock()
        self._next_seq = 1
        self._unsent: list[tuple[int, str, dict[str, Any]]] = []
        self._cancel = False
        self.ended = False  # the server says the run is over (its token no longer works)

    # -- transport -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, deadline_s: float, **kwargs: Any) -> httpx.Response:
        """One request, retried with exponential backoff on connection errors, timeouts and 5xx
        until `deadline_s` has passed (then the last error is raised)."""
        deadline = time.monotonic() + deadline_s
        wait = BACKOFF_FIRST_S
        content_factory = kwargs.pop("content_factory", None)  # a fresh body stream per attempt
        while True:
            try:
                if content_factory is not None:
                    kwargs["content"] = content_factory()
                response = self._client.request(method, f"{self._prefix}{path}", **kwargs)
                if response.status_code < 500:
                    return response
                error: Exception = httpx.HTTPStatusError(f"{response.status_code}: {response.text[:200]}",
                                                         request=response.request, response=response)
            except httpx.TransportError as exc:
                error = exc
            if time.monotonic() + wait > deadline:
                raise error
            time.sleep(wait)  # backoff between retries of a failed request
            wait = min(wait * 2, BACKOFF_MAX_S)

    def _refused(self, response: httpx.Response) -> None:
        if response.status_code == 403:
            self.ended, self._cancel = True, True
        if response.status_code >= 400:
            raise IngestRefused(f"{response.request.method} {response.request.url.path}: "
                                f"{response.status_code} {response.text[:300]}")

    def _send_unsent(self, deadline_s: float) -> None:
        """Send the buffered events in order; they stay buffered until acknowledged."""
        with self._lock:
            while self._unsent and not self.ended:
                chunk = self._unsent[:MAX_BATCH]
                body = {"events": [{"seq": seq, "kind": kind, "payload": payload} for seq, kind, payload in chunk]}
                response = self._call("POST", "/events", deadline_s, json=body)
                if response.status_code == 409 and "expected_seq" in response.json():
                    expected = int(response.json()["expected_seq"])
                    # The server has everything before `expected`; anything we still hold from
                    # there on is sent next. Rows below what we hold were lost: say so, never fill.
                    if expected < chunk[0][0]:
                        raise IngestRefused(f"the server expects seq {expected} but seqs from {chunk[0][0]} "
                                            "are all this trainer still holds")
                    self._unsent = [row for row in self._unsent if row[0] >= expected]
                    continue
                if response.status_code == 422:
                    self._drop_refused(chunk, response)
                    continue
                self._refused(response)
                answer = response.json()
                self._cancel = bool(answer.get("cancel_requested"))
                acked = int(answer.get("last_seq", chunk[-1][0]))
                self._unsent = [row for row in self._unsent if row[0] > max(acked, chunk[-1][0])]

    def _drop_refused(self, chunk: list[tuple[int, str, dict[str, Any]]], response: httpx.Response) -> None:
        """The server refused the batch as invalid (422: nothing of it was stored). Sending it again
        would be refused again and hold back every later row, so drop the rows it names (the whole
        batch when it names none), say so, and renumber what is left from the batch's first seq: the
        server has accepted nothing from there on, so the numbering stays gap-free."""
        try:
            fields = [str(e.get("field", "")) for e in response.json().get("errors", [])]
        except ValueError:
            fields = []
        named = {int(m.group(1)) for f in fields if (m := re.match(r"events\.(\d+)\b", f))}
        bad = {chunk[i][0] for i in named if i < len(chunk)} or {row[0] for row in chunk}
        print(f"trainboard: the server refused {len(bad)} event(s) as invalid and they are dropped: "
              f"{response.text[:300]}", file=sys.stderr, flush=True)
        first = chunk[0][0]  # every unsent row is at or after it (the chunk is the head of the queue)
        kept = [row for row in self._unsent if row[0] not in bad]
        self._unsent = [(first + i, kind, payload) for i, (_, kind, payload) in enumerate(kept)]
        self._next_seq = first + len(self._unsent)

    def _try_send(self) -> bool:
        try:
            self._send_unsent(self.send_deadline_s)
            return True
        except (httpx.HTTPError, IngestRefused) as exc:
            print(f"trainboard: {len(self._unsent)} events not sent yet ({type(exc).__name__}: {exc}); "
                  "they go with the next batch", file=sys.stderr, flush=True)
            return False

    # -- RunStore ------------------------------------------------------------------------------
    def load(self) -> RunOrder:
        response = self._call("GET", "/order", self.report_deadline_s)
        self._refused(response)
        order = RunOrder(**response.json())
        with self._lock:
            if self._next_seq == 1 and not self._unsent:  # a resumed run: go on from its last event
                self._next_seq = order.trainer_seq + 1
        return order

    def report(self, status: str, reason: str | None = None, result: Any = None) -> bool:
        """running first; at the end, everything unsent and then the final status. False when
        the server no longer counts this trainer as the run's."""
        if status != "running":
            self._send_unsent(self.report_deadline_s)
        body = {"status": status, "reason": reason[:4000] if reason else None,
                "result": _result_fields(result), "pid": self.trainer_pid}
        response = self._call("POST", "/status", self.report_deadline_s, json=body)
        if response.status_code == 403:
            self.ended = True
            return False
        self._refused(response)
        answer = response.json()
        self._cancel = bool(answer.get("cancel_requested"))
        return bool(answer.get("accepted"))

    def append(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            for kind, payload in events:
                self._unsent.append((self._next_seq, kind, payload))
                self._next_seq += 1
        self._try_send()

    def heartbeat(self) -> None:
        if self._unsent:
            self._try_send()
            return
        try:
            response = self._call("POST", "/heartbeat", self.send_deadline_s)
        except httpx.HTTPError as exc:
            print(f"trainboard: heartbeat not sent ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
            return
        if response.status_code == 403:
            self.ended, self._cancel = True, True
        elif response.status_code == 200:
            self._cancel = bool(response.json().get("cancel_requested"))

    def save_artifact(self, name: str, path: Path) -> None:
        self._upload(f"/artifacts/{name}", Path(path), params={"filename": Path(path).name})

    def _upload(self, route: str, path: Path, **kwargs: Any) -> None:
        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as file:
                while block := file.read(1 << 20):
                    yield block

        response = self._call("PUT", route, self.report_deadline_s, content_factory=chunks,
                              headers={"Content-Length": str(path.stat().st_size)}, **kwargs)
        self._refused(response)

    def save_checkpoint(self, epoch: int, path: Path, pruned: list[int]) -> None:
        """Upload the checkpoint; the server drops the `pruned` epochs' copies as the engine did."""
        self._upload(f"/checkpoints/{epoch}", Path(path), params={"pruned": ",".join(map(str, pruned))})

    # -- files from the server -----------------------------------------------------------------
    def _download(self, path: str, out: Any) -> None:
        """Stream a file into `out` (rewound on each retry), with the retries of `_call`."""
        deadline = time.monotonic() + self.report_deadline_s
        wait = BACKOFF_FIRST_S
        while True:
            out.seek(0)
            out.truncate()
            try:
                with self._client.stream("GET", f"{self._prefix}{path}") as response:
                    if response.status_code < 500:
                        if response.status_code >= 400:
                            response.read()
                            self._refused(response)
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                        return
                    error: Exception = httpx.HTTPStatusError(f"{response.status_code}", request=response.request,
                                                             response=response)
            except httpx.TransportError as exc:
                error = exc
            if time.monotonic() + wait > deadline:
                raise error
            time.sleep(wait)
            wait = min(wait * 2, BACKOFF_MAX_S)

    def fetch_dataset(self, cache: Path | None = None) -> Path:
        """A data directory holding the run's data set, from this node's cache (app/datasets/remote.py)."""
        from app.datasets import remote

        response = self._call("GET", "/dataset", self.report_deadline_s)
        self._refused(response)

        def download(name: str) -> Iterator[bytes]:
            with tempfile.TemporaryFile() as out:
                self._download(f"/dataset/{name}", out)
                out.seek(0)
                while block := out.read(1 << 20):
                    yield block

        return remote.materialize(response.json(), download, cache)

    def fetch_checkpoint(self, dest: Path) -> Path:
        """The checkpoint the run's order resumes (or forks) from, downloaded to `dest`."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "w+b") as out:
            self._download("/checkpoint", out)
        return dest

    def cancel_requested(self) -> bool:
        return self._cancel or self.ended

    @property
    def unsent(self) -> int:
        return len(self._unsent)

    def close(self) -> None:
        self._client.close()
