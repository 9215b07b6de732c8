"""Tailgate behind a real nginx, configured from deploy/nginx/ (see docs/DEPLOY.md).

nginx listens on 127.0.0.1 and reaches the gateway from 127.0.0.2 (`proxy_bind`), the only address the
gateway trusts (`--trusted-proxy 127.0.0.2/32`). Test clients connect from their own loopback addresses
(127.0.0.10 = client A, 127.0.0.11 = client B, 127.0.0.20 = someone reaching the gateway directly).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time

import pytest

from nginx_support import (LOCAL_PUBLISHERS, PROXY_CIDR, nginx, read_records, receive_json, refused, request,  # noqa: F401
                           htpasswd, self_signed, stream, wait_until)

CLIENT_A, CLIENT_B, OUTSIDER = "127.0.0.10", "127.0.0.11", "127.0.0.20"
BEHIND_NGINX = ("--trusted-proxy", PROXY_CIDR, "--publish-from", LOCAL_PUBLISHERS)


def start_root(gateway, nginx, *extra):
    gw = gateway("--demo", "2", "--demo-rate", "20", *BEHIND_NGINX, *extra)
    proxy = nginx(gw.port, ("site-root.conf.template", {}))
    return gw, proxy


# --------------------------------------------------------------------------- dashboard, API, streams

def test_dashboard_and_static_files_load_through_nginx(gateway, nginx):
    gw, proxy = start_root(gateway, nginx)
    page = request(proxy.port, "/", source=CLIENT_A)
    assert page.status == 200 and page.header("content-type").startswith("text/html")
    assert 'src="js/dashboard-app.js"' in page.text and 'href="css/tailgate.css"' in page.text
    assert "default-src 'self'" in (page.header("content-security-policy") or "")
    console = request(proxy.port, "/console.html?worker=demo-1")
    assert console.status == 200 and 'src="js/console-app.js"' in console.text
    for asset in ("js/dashboard-app.js", "js/urls.js", "css/tailgate.css", "favicon.svg"):
        reply = request(proxy.port, "/" + asset)
        assert reply.status == 200, asset
        etag = reply.header("etag")
        assert etag, asset
        # Revalidation passes through nginx: 304 without a body.
        again = request(proxy.port, "/" + asset, headers={"If-None-Match": etag})
        assert again.status == 304 and again.body == b"", asset
    assert request(proxy.port, "/healthz").json() == {"status": "ok"}
    missing = request(proxy.port, "/api/workers/nope")
    assert missing.status == 404 and missing.json()["error"]["code"] == "worker_not_found"


def test_api_through_plain_nginx_uses_the_public_host(gateway, nginx):
    gw, proxy = start_root(gateway, nginx)
    workers = request(proxy.port, "/api/workers", headers={"Host": f"logs.internal:{proxy.port}"}).json()["workers"]
    assert [w["id"] for w in workers] == ["demo-1", "demo-2"]
    assert workers[0]["log_stream_path"] == "/ws/workers/demo-1"
    assert workers[0]["log_stream_url"] == f"ws://logs.internal:{proxy.port}/ws/workers/demo-1"
    # A client cannot claim https through nginx: nginx sets X-Forwarded-Proto from its own $scheme.
    forged = request(proxy.port, "/api/workers/demo-1", headers={
        "Host": "logs.internal", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}).json()
    assert forged["log_stream_url"] == "ws://logs.internal/ws/workers/demo-1"


def test_stream_through_nginx_replays_follows_and_ends(gateway, nginx):
    gw, proxy = start_root(gateway, nginx)
    # A worker published directly by a local process (127.0.0.1 is a --publish-from address).
    published = request(gw.port, "/api/workers/job-7/records", method="POST",
                        headers={"Content-Type": "text/plain"}, body=b"".join(b"line %d\n" % i for i in range(1, 6)))
    assert published.status == 200, published.text

    async def scenario():
        # Live demo stream: replay then live records, contiguous, compressed through the proxy.
        async with stream(f"ws://127.0.0.1:{proxy.port}/ws/workers/demo-1?tail=5", port=proxy.port,
                          source=CLIENT_A) as ws:
            assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            hello, seqs = await read_records(ws, 25)
            assert hello["worker"] == "demo-1" and seqs[-1] > hello["last_seq"]  # live records arrived too
        # A worker that stops: `end`, then close 1000, relayed by nginx.
        async with stream(f"ws://127.0.0.1:{proxy.port}/ws/workers/job-7?tail=100", port=proxy.port) as ws:
            hello, seqs = await read_records(ws, 5)
            assert seqs == [1, 2, 3, 4, 5]
            stopped = await asyncio.to_thread(request, gw.port, "/api/workers/job-7/stop", method="POST")
            assert stopped.status == 200, stopped.text
            end = await receive_json(ws)
            assert end["type"] == "end" and end["last_seq"] == 5
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000
        # Refusals before the upgrade come back through nginx with the gateway's JSON.
        status, body = await refused(f"ws://127.0.0.1:{proxy.port}/ws/workers/no-such-worker", port=proxy.port)
        assert status == 404 and body["error"]["code"] == "worker_not_found"

    asyncio.run(scenario())
    # nginx relayed a plain GET on /ws/ as such: 426 from the gateway.
    plain = request(proxy.port, "/ws/workers/demo-1")
    assert plain.status == 426 and plain.json()["error"]["code"] == "websocket_upgrade_required"


def test_publishing_through_nginx_is_not_local_publishing(gateway, nginx):
    """Requests relayed by nginx come from 127.0.0.2, outside --publish-from 127.0.0.1/32: anyone on the
    internet must not become a "local publisher" by going through the proxy."""
    gw, proxy = start_root(gateway, nginx)
    reply = request(proxy.port, "/api/workers/intruder/records", method="POST", source=CLIENT_A,
                    headers={"Content-Type": "text/plain"}, body=b"hello\n")
    assert reply.status == 403 and reply.json()["error"]["code"] == "publish_not_allowed", reply.text
    stop = request(proxy.port, "/api/workers/demo-1/stop", method="POST", source=CLIENT_A)
    assert stop.status == 403, stop.text
    assert request(gw.port, "/api/workers/intruder").status == 404


# --------------------------------------------------------------------------- TLS, sub-path, forwarded headers

@pytest.fixture
def tls_subpath(gateway, nginx, tmp_path):
    cert, key, client_tls = self_signed(tmp_path)
    gw = gateway("--demo", "2", "--demo-rate", "20", "--base-path", "/tailgate", *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-tls-subpath.conf.template", {
        "TG_SERVER_NAME": "public.host", "TG_BASE_PATH": "/tailgate", "TG_PUBLIC_ORIGIN": "https://public.host",
        "TG_SSL_CERT": str(cert), "TG_SSL_KEY": str(key)}))
    return gw, proxy, client_tls


def test_tls_subpath_dashboard_api_and_stream(tls_subpath):
    gw, proxy, tls = tls_subpath
    port = proxy.ports["TG_TLS_LISTEN"]
    public = {"Host": "public.host"}
    # The dashboard under the sub-path, with its relative assets.
    page = request(port, "/tailgate/", tls=tls, headers=public)
    assert page.status == 200 and 'src="js/dashboard-app.js"' in page.text
    assert request(port, "/tailgate/js/dashboard-app.js", tls=tls, headers=public).status == 200
    assert request(port, "/tailgate/console.html?worker=demo-2", tls=tls, headers=public).status == 200
    bare = request(port, "/tailgate?access_token=x", tls=tls, headers=public)
    assert bare.status == 301 and bare.header("location") == "/tailgate/?access_token=x"
    # Plain HTTP is redirected to the HTTPS origin.
    redirect = request(proxy.ports["TG_HTTP_LISTEN"], "/tailgate/api/workers", headers=public)
    assert redirect.status == 301 and redirect.header("location") == "https://public.host/tailgate/api/workers"
    # The API gives wss:// URLs on the public host, with the prefix.
    workers = request(port, "/tailgate/api/workers", tls=tls, headers=public).json()["workers"]
    assert workers[0]["log_stream_path"] == "/tailgate/ws/workers/demo-1"
    assert workers[0]["log_stream_url"] == "wss://public.host/tailgate/ws/workers/demo-1"
    one = request(port, "/tailgate/api/workers/demo-2", tls=tls, headers={"Host": f"public.host:{port}"}).json()
    assert one["log_stream_url"] == f"wss://public.host:{port}/tailgate/ws/workers/demo-2"
    # The demo worker publishes 20 records/s: wait (bounded) until it holds at least 3.
    deadline = time.monotonic() + 10
    while gw.http("/api/workers/demo-1").json()["last_seq"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = request(port, "/tailgate/api/workers/demo-1/logs?format=text&limit=3&download=1", tls=tls, headers=public)
    assert logs.status == 200 and len(logs.text.splitlines()) == 3
    assert logs.header("content-disposition") == 'attachment; filename="demo-1.log"'

    async def scenario():
        url = workers[0]["log_stream_url"] + "?tail=3"
        # As a browser on https://public.host would: its Origin matches the public host.
        async with stream(url, port=port, tls=tls, origin="https://public.host") as ws:
            hello, seqs = await read_records(ws, 15)
            assert hello["worker"] == "demo-1"
        status, body = await refused(url, port=port, tls=tls, origin="https://evil.example")
        assert status == 403 and body["error"]["code"] == "origin_not_allowed"

    asyncio.run(scenario())


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tls_subpath):
    gw, proxy, tls = tls_subpath
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "203.0.113.9"}
    # Straight to the gateway, not through nginx: plain ws:// and the real Host.
    direct = request(gw.port, "/tailgate/api/workers", source=OUTSIDER, headers=forged).json()["workers"]
    assert direct[0]["log_stream_url"] == f"ws://127.0.0.1:{gw.port}/tailgate/ws/workers/demo-1"
    # Without the prefix as well (a request may arrive either way), same answer.
    direct = request(gw.port, "/api/workers/demo-1", source=OUTSIDER, headers=forged).json()
    assert direct["log_stream_url"] == f"ws://127.0.0.1:{gw.port}/tailgate/ws/workers/demo-1"

    async def scenario():
        # The Origin check uses the real Host, not the forged X-Forwarded-Host.
        url = f"ws://127.0.0.1:{gw.port}/tailgate/ws/workers/demo-1?tail=1"
        status, body = await refused(url, port=gw.port, source=OUTSIDER, origin="https://evil.example",
                                     headers=forged)
        assert status == 403 and body["error"]["code"] == "origin_not_allowed"
        async with stream(url, port=gw.port, source=OUTSIDER, origin=f"http://127.0.0.1:{gw.port}",
                          headers=forged) as ws:
            await read_records(ws, 1)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- per-client limits

def test_per_ip_limit_counts_the_forwarded_client_only_from_the_trusted_proxy(gateway, nginx):
    gw, proxy = start_root(gateway, nginx, "--max-connections-per-ip", "2")
    via_nginx = f"ws://127.0.0.1:{proxy.port}/ws/workers/demo-1?tail=0"
    direct = f"ws://127.0.0.1:{gw.port}/ws/workers/demo-2?tail=0"

    async def hello(ws):
        assert (await receive_json(ws))["type"] == "hello"
        return ws

    proxied_refusals = []  # checked last: the rest of the scenario is worth seeing even when they are wrong

    async def scenario():
        async with stream(via_nginx, port=proxy.port, source=CLIENT_A) as a1, \
                   stream(via_nginx, port=proxy.port, source=CLIENT_A) as a2:
            await hello(a1), await hello(a2)
            # A's third stream is refused by the gateway (relayed by nginx).
            proxied_refusals.append(await refused(via_nginx, port=proxy.port, source=CLIENT_A))
            # Forging X-Forwarded-For through nginx does not help: nginx appends the real address.
            proxied_refusals.append(await refused(via_nginx, port=proxy.port, source=CLIENT_A,
                                                  headers={"X-Forwarded-For": CLIENT_B}))
            # Client B, through the same proxy, has its own budget.
            async with stream(via_nginx, port=proxy.port, source=CLIENT_B) as b1:
                await hello(b1)
                # Someone reaching the gateway directly, claiming to be B (or anyone): counted as
                # itself (127.0.0.20), per connection; the forged header changes nothing.
                async with stream(direct, port=gw.port, source=OUTSIDER, headers={"X-Forwarded-For": CLIENT_B}) as d1, \
                           stream(direct, port=gw.port, source=OUTSIDER, headers={"X-Forwarded-For": "198.51.100.1"}) as d2:
                    await hello(d1), await hello(d2)
                    status, body = await refused(direct, port=gw.port, source=OUTSIDER,
                                                 headers={"X-Forwarded-For": "198.51.100.2"})
                    assert status == 503 and body["error"]["code"] == "too_many_connections_from_address"
                    assert OUTSIDER in body["error"]["message"]
                    # ... and it did not use up B's places.
                    async with stream(via_nginx, port=proxy.port, source=CLIENT_B) as b2:
                        await hello(b2)
        # Closed streams give their places back: A may open two again.
        deadline = time.monotonic() + 10
        while True:
            try:
                async with stream(via_nginx, port=proxy.port, source=CLIENT_A) as a1, \
                           stream(via_nginx, port=proxy.port, source=CLIENT_A) as a2:
                    await hello(a1), await hello(a2)
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    asyncio.run(scenario())
    # The refusals of A's third stream: 503 with the per-address code, like any other client's.
    for status, body in proxied_refusals:
        assert (status, body["error"]["code"]) == (503, "too_many_connections_from_address"), (status, body)
        assert CLIENT_A in body["error"]["message"]


# --------------------------------------------------------------------------- auth_basic

def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_guards_dashboard_api_and_streams(gateway, nginx, tmp_path):
    gw = gateway("--demo", "1", "--demo-rate", "20", *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-basic-auth.conf.template",
                            {"TG_HTPASSWD": str(htpasswd(nginx.dir / "htpasswd", "ops", "s3cret pass"))}))
    for path in ("/", "/console.html?worker=demo-1", "/api/workers", "/js/urls.js"):
        reply = request(proxy.port, path)
        assert reply.status == 401 and 'Basic realm="Tailgate"' in reply.header("www-authenticate"), path
        assert request(proxy.port, path, headers=basic("ops", "wrong")).status == 401, path
        assert request(proxy.port, path, headers=basic("ops", "s3cret pass")).status == 200, path
    assert request(proxy.port, "/healthz").status == 200  # health checks need no password

    async def scenario():
        url = f"ws://127.0.0.1:{proxy.port}/ws/workers/demo-1?tail=2"
        status, _ = await refused(url, port=proxy.port)
        assert status == 401
        status, _ = await refused(url, port=proxy.port, headers=basic("ops", "nope"))
        assert status == 401
        async with stream(url, port=proxy.port, headers=basic("ops", "s3cret pass")) as ws:
            await read_records(ws, 10)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- auth_request

class AuthService:
    """A stand-in for oauth2-proxy & co.: 204 for the cookie `session=good`, 403 for `session=banned`,
    else 401. Remembers what nginx asked."""

    def __init__(self):
        self.asked: list[dict[str, str]] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                service.asked.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                cookie = self.headers.get("Cookie", "")
                status = 204 if "session=good" in cookie else 403 if "session=banned" in cookie else 401
                self.send_response(status)
                if status == 204:
                    self.send_header("X-Auth-User", "alice")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth_service():
    service = AuthService()
    yield service
    service.close()


def test_auth_request_allows_and_denies_upgrades(gateway, nginx, auth_service):
    gw = gateway("--demo", "1", "--demo-rate", "20", *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-auth-request.conf.template",
                            {"TG_AUTH_URL": f"http://127.0.0.1:{auth_service.port}/check"}))
    good, banned = {"Cookie": "theme=dark; session=good"}, {"Cookie": "session=banned"}
    assert request(proxy.port, "/").status == 401
    assert request(proxy.port, "/", headers=banned).status == 403
    assert request(proxy.port, "/", headers=good).status == 200
    assert request(proxy.port, "/api/workers", headers=good).json()["workers"][0]["id"] == "demo-1"
    assert request(proxy.port, "/api/workers").status == 401
    assert request(proxy.port, "/healthz").status == 200
    url = f"ws://127.0.0.1:{proxy.port}/ws/workers/demo-1?tail=2"

    async def scenario():
        assert (await refused(url, port=proxy.port))[0] == 401
        assert (await refused(url, port=proxy.port, headers=banned))[0] == 403
        async with stream(url, port=proxy.port, headers=good) as ws:
            await read_records(ws, 10)

    auth_service.asked.clear()
    asyncio.run(scenario())
    # nginx asked the service about each upgrade, with the original URI and the Upgrade header.
    upgrades = [a for a in auth_service.asked if a.get("x-original-uri") == "/ws/workers/demo-1?tail=2"]
    assert len(upgrades) == 3, auth_service.asked
    assert all(a["x-original-upgrade"].lower() == "websocket" and a["path"] == "/check" for a in upgrades)
    assert "session=good" in upgrades[-1]["cookie"]
    # The service's verdict is logged by nginx (auth_request_set), not passed to the gateway.
    assert "demo-1" in proxy.access_log()


# --------------------------------------------------------------------------- a real browser

def test_chromium_console_through_nginx_with_basic_auth(gateway, nginx, tmp_path):
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    gw = gateway("--demo", "2", "--demo-rate", "20", *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-basic-auth.conf.template",
                            {"TG_HTPASSWD": str(htpasswd(nginx.dir / "htpasswd", "ops", "pw-123"))}))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--disable-background-timer-throttling"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_script_timeout(20)
        # Every request of the page (documents, fetches, the WebSocket upgrade) carries the credentials.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": basic("ops", "pw-123")})
        driver.get(f"http://127.0.0.1:{proxy.port}/console.html?worker=demo-1")
        inspect = """
            const done = arguments[arguments.length - 1];
            import(new URL('js/console-app.js', document.baseURI).href)
              .then((m) => done(m.currentConsole()?.inspect({}) ?? null))
              .catch((e) => done({error: String(e)}));"""
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline:
            state = driver.execute_async_script(inspect)
            if state and state.get("lines", 0) >= 20 and state.get("state") == "live":
                break
            time.sleep(0.25)
        assert state and state.get("lines", 0) >= 20 and state.get("state") == "live", state
        first = state["lines"]
        wait_until(lambda: driver.execute_async_script(inspect)["lines"] > first, 15, message="more live lines")
        text = driver.find_element("id", "log").text
        assert "demo" in text.lower() or "INFO" in text
        severe = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert severe == [], severe
        # The gateway sees the browser's stream (relayed by nginx).
        assert request(gw.port, "/api/workers/demo-1").json()["subscribers"] >= 1
    finally:
        driver.quit()
    # nginx logs a WebSocket when it ends: it was an authenticated upgrade through the proxy.
    line = wait_until(lambda: [l for l in proxy.access_log().splitlines() if "GET /ws/workers/demo-1" in l], 10,
                      message="the stream in nginx's access log")[0]
    assert " ops " in line and '" 101 ' in line, line


# --------------------------------------------------------------------------- what a reverse proxy relies on

def test_connection_after_a_refused_upgrade_is_answered_or_closed(gateway):
    """A proxy reuses upstream connections that a response left open (`Connection: keep-alive`). After
    refusing a WebSocket upgrade, the gateway must answer the next request on that connection — or
    say `Connection: close` and close it. (The deploy/nginx configs keep /ws/ out of the keep-alive pool
    anyway, so this is about other proxies and clients.)"""
    import socket

    gw = gateway("--demo", "1")

    def exchange(sock, raw: bytes) -> bytes:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            return b"<closed>"
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return data + b"<no answer>"
            except ConnectionResetError:
                return data + b"<closed>"
            if not chunk:
                return data + b"<closed>"
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                return data

    upgrade = (b"GET /ws/workers/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        first = exchange(sock, upgrade)
        assert first.startswith(b"HTTP/1.1 404"), first
        second = exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        if b"connection: close" in first.lower():
            assert second.endswith(b"<closed>"), second
        else:
            assert second.startswith(b"HTTP/1.1 200"), (
                f"the refusal said keep-alive but the next request on the connection got {second!r}")
