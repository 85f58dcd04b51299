"""``LoopbackHub``: a Hub-compatible HTTP server on 127.0.0.1, with fault injection for tests.

Why the lifecycle looks the way it does:

- The port is chosen once, in ``__init__``, and kept for the object's life, because
  huggingface_hub reads ``HF_ENDPOINT`` once at import: a test that stops "the Hub" and starts it
  again must find it at the same URL. While stopped, the port stays bound but not listening, so
  connections are refused at once (no hang, no other process taking the port).
- ``stop()`` also closes the connections the client keeps alive, otherwise a pooled keep-alive
  connection would still be served by its handler thread and "the Hub is down" would not be true.
- Every request runs under one lock, so each request is atomic with respect to the others; only
  ``hang_next`` waits happen outside it.
- ``disable_nagle_algorithm`` matters: without TCP_NODELAY every request stalls ~40 ms on the
  delayed-ACK/Nagle interaction.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from . import routes
from .models import Commit, RecordedRequest, RepoState
from .store import Repo, Store

HOST = "127.0.0.1"
DUMMY_TOKEN = "hf_loopbackDummyTokenForTests"
DEFAULT_USER = "evalsink-tester"
DEFAULT_ORGS = ("evalsink-org",)
DEFAULT_TREE_PAGE_SIZE = 1000  # the Hub's page size for tree listings

_MAX_BODY = 512 * 1024 * 1024


@dataclass
class _Fault:
    kind: str  # "fail" or "hang"
    remaining: int
    status: int
    seconds: float
    method: str | None
    path_contains: str | None

    def matches(self, method: str, path: str, raw_target: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_contains is None or self.path_contains in path or self.path_contains in raw_target


class _Handler(BaseHTTPRequestHandler):
    """Parses one request, asks the hub for the answer, writes it. HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "LoopbackHub/1.0"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection gives its thread back eventually
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request log (``hub.requests``) is where tests look."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > _MAX_BODY:
            raise ValueError(f"unsupported Content-Length {length}")
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        hub = self.server.hub
        raw_path, _, query = self.path.partition("?")
        authorization = self.headers.get("Authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
        body: bytes | None = None
        bad_body = ""
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            bad_body = str(exc)
        request = routes.Request(
            method=self.command,
            raw_path=raw_path,
            path=unquote(raw_path),
            segments=[unquote(part) for part in raw_path.split("/")[1:]],
            query=query,
            headers=self.headers,
            body=body or b"",
            token=token,
            base_url=f"http://{self.headers.get('Host') or f'{HOST}:{self.server.server_port}'}",
        )
        if body is None:
            response: routes.Response | None = routes.json_response(
                400, {"error": f"Malformed request body: {bad_body}"}
            )
        else:
            response = hub._answer(request, self.path)
        if response is None:  # stopped while hanging: drop the connection without an answer
            self.close_connection = True
            return
        request_id = self.headers.get("X-Amzn-Trace-Id") or self.headers.get("X-Request-Id")
        if request_id:
            response.headers.setdefault("X-Request-Id", request_id)
        if response.status >= 400 and response.body:
            response.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        # recorded before the bytes leave: a client that got its answer always finds it in the log
        hub._record(RecordedRequest(request.method, request.path, response.status, query, token))
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:  # the client went away (timed out, or the hub is stopping)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    """One thread per connection, tracked so ``stop()`` can close them and join the threads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: LoopbackHub) -> None:
        self.hub = hub
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"loopback-hub-conn-{client_address[1]}",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection resets are normal in fault tests; anything else is a server bug to report."""
        error = traceback.format_exc()
        if "ConnectionResetError" in error or "BrokenPipeError" in error or "TimeoutError" in error:
            return
        self.hub.server_errors.append(error)

    def close_connections(self, timeout: float) -> None:
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _thread in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _sock, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


def _reserve_port(port: int) -> socket.socket | None:
    """Bind without listening: the port stays ours and connections to it are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        if port == 0:
            raise
        return None  # the port is only not reserved while stopped; start() retries binding it
    return sock


class LoopbackHub:
    """A Hugging Face Hub stand-in for tests, faithful to the HTTP API huggingface_hub 2.4 uses.

    Beyond the contract (url, start/stop/reset, fail_next/hang_next, requests, commits/files/repo)
    it offers: ``user``/``orgs`` (who every token is), ``valid_tokens`` (None = accept any token;
    a set = others get 401 "Invalid credentials"), ``strict_namespaces`` (403 outside the user's
    namespaces, like the Hub), ``tree_page_size`` (to exercise pagination), ``server_errors``
    (tracebacks of server bugs, answered as 500), ``faults_pending``, ``running`` and ``close()``.
    ``reset()`` restores all of them.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._lifecycle = threading.Lock()
        self._store = Store()
        self._faults: list[_Fault] = []
        self._abort = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.server_errors: list[str] = []
        self.user = DEFAULT_USER
        self.orgs: list[str] = list(DEFAULT_ORGS)
        self.valid_tokens: set[str] | None = None
        self.strict_namespaces = False
        self.tree_page_size = DEFAULT_TREE_PAGE_SIZE
        self._reserved = _reserve_port(0)
        assert self._reserved is not None
        self._port: int = self._reserved.getsockname()[1]
        self.url = f"http://{HOST}:{self._port}"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Serve on ``self.url``; a no-op when already serving. State survives stop()/start()."""
        with self._lifecycle:
            if self._server is not None:
                return
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None
            self._abort.clear()
            server = self._listen()
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"loopback-hub-{self._port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread

    def _listen(self) -> _Server:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return _Server((HOST, self._port), self)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise RuntimeError(f"LoopbackHub could not listen on {self.url}: {exc}") from exc
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop listening and drop open connections: new requests get "connection refused"."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None:
                return
            self._server = self._thread = None
            self._abort.set()  # wakes requests held by hang_next; they are dropped unanswered
            server.shutdown()
            server.server_close()
            server.close_connections(timeout=5.0)
            if thread is not None:
                thread.join(5.0)
            self._reserved = _reserve_port(self._port)

    def close(self) -> None:
        """Stop and release the port (at the end of a session); a later start() binds it again."""
        self.stop()
        with self._lifecycle:
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None

    def __enter__(self) -> LoopbackHub:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget repositories, faults, the request log and every setting changed by a test."""
        with self._lock:
            self._store = Store()
            self._faults.clear()
            self.requests.clear()
            self.server_errors.clear()
            self.user = DEFAULT_USER
            self.orgs = list(DEFAULT_ORGS)
            self.valid_tokens = None
            self.strict_namespaces = False
            self.tree_page_size = DEFAULT_TREE_PAGE_SIZE

    # ------------------------------------------------------------ fault injection

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """The next ``count`` matching requests get ``status`` and a JSON error, state untouched.

        429 and 503 carry ``Retry-After: 0``. Note that huggingface_hub's backoff still sleeps
        1 s (``Retry-After`` + 1) before each retry on the endpoints it retries.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        with self._lock:
            self._faults.append(_Fault("fail", count, status, 0.0, method, path_contains))

    def hang_next(
        self,
        count: int,
        seconds: float,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """The next ``count`` matching requests wait ``seconds``, then are answered normally.

        The request takes effect after the wait even if the client has given up by then, which
        is how a lost response looks from the client (a retried commit is applied twice).
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._faults.append(_Fault("hang", count, 0, seconds, method, path_contains))

    @property
    def faults_pending(self) -> int:
        """How many injected faults have not been consumed yet (to check a test used them all)."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def _take_faults(self, method: str, path: str, raw_target: str) -> tuple[float, int]:
        """Consume the first matching hang and the first matching failure, if any."""
        hang, status = 0.0, 0
        with self._lock:
            for kind in ("hang", "fail"):
                for fault in self._faults:
                    if fault.kind == kind and fault.remaining > 0 and fault.matches(method, path, raw_target):
                        fault.remaining -= 1
                        if kind == "hang":
                            hang = fault.seconds
                        else:
                            status = fault.status
                        break
            self._faults = [fault for fault in self._faults if fault.remaining > 0]
        return hang, status

    # ------------------------------------------------------------ serving

    def _answer(self, request: routes.Request, raw_target: str) -> routes.Response | None:
        hang, status = self._take_faults(request.method, request.path, raw_target)
        if hang and self._abort.wait(hang):
            return None
        if status:
            headers = {"Retry-After": "0"} if status in (429, 503) else {}
            return routes.json_response(
                status, {"error": f"Injected failure: HTTP {status} (LoopbackHub.fail_next)"}, headers
            )
        with self._lock:
            try:
                return routes.handle(self, request)
            except Exception as exc:
                self.server_errors.append(traceback.format_exc())
                return routes.json_response(500, {"error": f"LoopbackHub internal error: {exc!r}"})

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    # ------------------------------------------------------------ inspection

    def _repo(self, repo_id: str, repo_type: str) -> Repo:
        repo = self._store.get(repo_type, repo_id)
        if repo is None:
            raise KeyError(
                f"No {repo_type} repository {repo_id!r} on the loopback Hub ({self._store.describe()})"
            )
        return repo

    def commits(self, repo_id: str, repo_type: str = "dataset") -> list[Commit]:
        """Every commit on ``main``, oldest first; the first is the Hub's ``initial commit``."""
        with self._lock:
            return [record.commit for record in self._repo(repo_id, repo_type).history]

    def files(
        self, repo_id: str, repo_type: str = "dataset", revision: str | None = None
    ) -> dict[str, bytes]:
        """The files at the head of ``main`` (or at ``revision``, a commit id), with ``.gitattributes``."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            record = repo.head if revision is None else repo.resolve(revision)
            return dict(record.files)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> RepoState:
        """The settings of a repository; ``exists=False`` (not an error) when there is none."""
        with self._lock:
            found = self._store.get(repo_type, repo_id)
            if found is None:
                return RepoState(repo_id=repo_id, repo_type=repo_type, exists=False)
            return RepoState(
                repo_id=repo_id, repo_type=repo_type, exists=True, private=found.private, gated=found.gated
            )
