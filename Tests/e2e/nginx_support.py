"""A real nginx for the deployment tests (test_nginx.py, test_auth.py), run from deploy/nginx's templates.

- `nginx` (fixture, function scope): a factory. `nginx(upstream_port, ("site-root.conf.template",
  {...placeholders...}), ...)` renders deploy/nginx/* into a temporary prefix, starts
  `nginx -p DIR -c DIR/conf/nginx.conf -g 'daemon off;'` on loopback ports and returns an `Nginx`.
  Every nginx started is stopped when the test ends. The binary is Debian's `nginx`: installed with
  apt-get when missing (as root); the tests are skipped, saying why, only when that is impossible.
- `request(...)`: one HTTP(S) request from a chosen loopback source address with any `Host` header.
- `stream(...)`: a WebSocket client (python `websockets`) to nginx or the gateway, from a chosen source.
- `self_signed(dir)`: a certificate for `public.host` (and 127.0.0.1) made with openssl.

Addresses: nginx listens on 127.0.0.1 and connects to the gateway from 127.0.0.2 (`proxy_bind` in
snippets/tailgate-proxy-headers.conf), which is what the gateway trusts (`PROXY_CIDR`). Test clients pick
their own source addresses (127.0.0.10, 127.0.0.11, ...) so nginx sees distinct clients.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX_DIR = REPO_ROOT / "deploy" / "nginx"
PROXY_ADDRESS = "127.0.0.2"          # nginx's source address towards the gateway (proxy_bind)
PROXY_CIDR = "127.0.0.2/32"          # --trusted-proxy
LOCAL_PUBLISHERS = "127.0.0.1/32"    # --publish-from: local processes, but not what nginx relays
PLACEHOLDER = re.compile(r"\$\{(TG_[A-Z0-9_]+)\}")
START_TIMEOUT = 15.0


def render(text: str, values: dict[str, str]) -> str:
    """Fills `${TG_...}` placeholders (what `envsubst '$TG_A $TG_B'` does); nginx's own `$vars` stay."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise KeyError(f"no value for placeholder(s) {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_nginx_binary: str | None = None
_nginx_problem: str | None = None


def nginx_binary() -> str:
    """Debian's nginx; installed with apt-get when missing. Skips the test only when that fails."""
    global _nginx_binary, _nginx_problem
    if _nginx_binary:
        return _nginx_binary
    if _nginx_problem:
        pytest.skip(_nginx_problem)
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Keep the package from starting a system nginx on port 80 (policy-rc.d 101 = "not now").
        policy = Path("/usr/sbin/policy-rc.d")
        made_policy = not policy.exists()
        if made_policy:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, capture_output=True, timeout=300)
            if not (shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)):
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
                subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, capture_output=True, timeout=300)
        finally:
            if made_policy:
                policy.unlink(missing_ok=True)
        found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not found:
        _nginx_problem = ("nginx is not installed and could not be installed (`apt-get install nginx` needs root "
                          "and a package mirror); the deployment tests need a real nginx")
        pytest.skip(_nginx_problem)
    _nginx_binary = found
    return found


@dataclass
class Nginx:
    proc: subprocess.Popen
    prefix: Path
    ports: dict[str, int]
    output: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.ports["TG_LISTEN"] if "TG_LISTEN" in self.ports else next(iter(self.ports.values()))

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown (closes open WebSockets)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_listening(port: int, proc: subprocess.Popen, deadline: float) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx is not listening on 127.0.0.1:{port} after {START_TIMEOUT:.0f} s")
            time.sleep(0.05)


@pytest.fixture
def nginx():
    """Factory: `nginx(upstream_port, (site_template, values), ...)` -> a running `Nginx`.

    Values for the `*_LISTEN` placeholders may be left out: free loopback ports are picked and
    returned in `Nginx.ports` (by placeholder name). `nginx.dir` is a folder for files nginx's workers
    read (password files): when the master runs as root the workers run as `nobody`, who cannot enter
    pytest's private tmp_path."""
    started: list[Nginx] = []
    workdir = Path(tempfile.mkdtemp(prefix="tailgate-nginx-"))
    workdir.chmod(0o755)

    def start(upstream_port: int, *sites: tuple[str, dict[str, str]]) -> Nginx:
        binary = nginx_binary()
        prefix = Path(tempfile.mkdtemp(prefix=f"prefix{len(started)}-", dir=workdir))
        prefix.chmod(0o755)
        conf = prefix / "conf"
        for sub in ("conf/snippets", "conf/sites", "logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        (conf / "nginx.conf").write_text(render((NGINX_DIR / "nginx-standalone.conf.template").read_text(), {}))
        (conf / "tailgate-http.conf").write_text(
            render((NGINX_DIR / "tailgate-http.conf.template").read_text(), {"TG_UPSTREAM": f"127.0.0.1:{upstream_port}"}))
        for snippet in (NGINX_DIR / "snippets").glob("*.conf"):
            shutil.copy(snippet, conf / "snippets" / snippet.name)
        ports: dict[str, int] = {}
        for index, (template, values) in enumerate(sites):
            values = dict(values)
            text = (NGINX_DIR / template).read_text()
            for name in set(PLACEHOLDER.findall(text)):
                if name.endswith("_LISTEN") and name not in values:
                    port = free_port()
                    values[name] = f"127.0.0.1:{port}"
                    ports[name if name not in ports else f"{name}{index}"] = port
            values.setdefault("TG_SERVER_NAME", "_")
            (conf / "sites" / f"{index:02d}-{template.removesuffix('.template')}").write_text(render(text, values))
        test = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(conf / "nginx.conf")],
                              capture_output=True, text=True)
        assert test.returncode == 0, f"nginx -t refused the rendered config:\n{test.stderr}"
        proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf / "nginx.conf"), "-g", "daemon off;"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = Nginx(proc, prefix, ports)
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            for port in ports.values():
                _wait_listening(port, proc, deadline)
        except RuntimeError as error:
            pytest.fail(f"{error}\nerror.log:\n{server.error_log()}")
        return server

    start.dir = workdir
    yield start

    for server in started:
        print(f"--- nginx error.log ({server.prefix}):\n{server.error_log()}")
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None, source: str | None = None, tls: ssl.SSLContext | None = None,
            timeout: float = 10.0) -> Reply:
    """One request to 127.0.0.1:`port` from `source` (a loopback address); `Host` may be set in headers."""
    source_address = (source, 0) if source else None
    if tls is not None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=timeout,
                                                 source_address=source_address)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=source_address)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def stream(url: str, *, port: int, source: str | None = None, tls: ssl.SSLContext | None = None,
           headers: dict[str, str] | None = None, **kwargs):
    """`websockets.connect(url)` but to 127.0.0.1:`port` from `source` (the URL's host goes in `Host`
    and, with TLS, in SNI and the certificate check)."""
    from websockets.asyncio.client import connect

    options = dict(host="127.0.0.1", port=port, proxy=None, open_timeout=10, close_timeout=3,
                   additional_headers=headers or {}, max_size=2 ** 24)
    if source:
        options["local_addr"] = (source, 0)
    if tls is not None:
        options["ssl"] = tls
    options.update(kwargs)
    return connect(url, **options)


async def receive_json(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def read_records(ws, count: int, timeout: float = 20.0) -> tuple[dict, list[int]]:
    """Reads `hello` and then until `count` seqs were covered; checks the contiguity invariant."""
    hello = await receive_json(ws, timeout)
    assert hello["type"] == "hello", hello
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while len(seqs) < count:
        message = await receive_json(ws, max(0.1, deadline - time.monotonic()))
        if message["type"] == "logs":
            seqs += [record["seq"] for record in message["records"]]
        elif message["type"] == "gap":
            seqs += list(range(message["from"], message["to"] + 1))
        else:
            raise AssertionError(f"unexpected message {message}")
    assert seqs == list(range(hello["replay_from"], hello["replay_from"] + len(seqs))), seqs[:20]
    return hello, seqs


def refusal(error: BaseException) -> tuple[int, dict]:
    """(status, JSON body) of a refused WebSocket handshake (`websockets.exceptions.InvalidStatus`)."""
    from websockets.exceptions import InvalidStatus

    assert isinstance(error, InvalidStatus), repr(error)
    body = error.response.body or b""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {"raw": body.decode("utf-8", errors="replace")[:200]}
    return error.response.status_code, parsed


async def refused(url: str, **kwargs) -> tuple[int, dict]:
    """Opens a stream that must be refused; returns (status, JSON body)."""
    from websockets.exceptions import InvalidStatus

    try:
        async with stream(url, **kwargs):
            pass
    except InvalidStatus as error:
        return refusal(error)
    raise AssertionError(f"{url} was accepted")


def self_signed(directory: Path, name: str = "public.host") -> tuple[Path, Path, ssl.SSLContext]:
    """(cert, key, client SSL context trusting it) for `name` and 127.0.0.1, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o644)
    context = ssl.create_default_context(cafile=str(cert))
    return cert, key, context


def htpasswd(path: Path, user: str, password: str) -> Path:
    """A password file for auth_basic (apr1 hash, made with openssl)."""
    hashed = subprocess.run(["openssl", "passwd", "-apr1", password], check=True, capture_output=True,
                            text=True).stdout.strip()
    path.write_text(f"{user}:{hashed}\n")
    path.chmod(0o644)
    return path


def wait_until(condition, timeout: float = 10.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message} (last: {last!r})")
