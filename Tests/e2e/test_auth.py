"""Scoped, expiring access tokens (`tailgate serve --auth-secret-file`), directly and behind nginx.

Tokens are made with `tailgate token`; `test_token_command_prints_a_token_the_gateway_accepts` checks
that command on its own. The other tests sign their tokens here, in Python, to the documented format
(an HS256 JSON Web Token, claims `{"workers":[...],"scope":"read publish","exp":N}`, kid `default` for a
one-key secret file), as an identity service would, so they do not depend on the command and also check
that format.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import time

import pytest

from nginx_support import (LOCAL_PUBLISHERS, PROXY_CIDR, nginx, read_records, receive_json, refused, request,  # noqa: F401
                           self_signed, stream, wait_until)

SECRET = b"correct horse battery staple 0123456789"
BEHIND_NGINX = ("--trusted-proxy", PROXY_CIDR, "--publish-from", LOCAL_PUBLISHERS)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(workers: list[str], scope: str = "read", ttl: float = 3600, secret: bytes = SECRET, kid: str | None = "default",
         **claims_extra) -> str:
    """An HS256 JWT as an identity service would mint it (docs/PROTOCOL.md, "Auth and proxies")."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    claims = {"workers": workers, "scope": " ".join(scope.split(",")), "exp": int(time.time() + ttl), **claims_extra}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def error_code(reply) -> str:
    return reply.json()["error"]["code"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- the token command

def test_token_command_prints_a_token_the_gateway_accepts(gateway_binary, gateway, secret_file):
    made = subprocess.run([str(gateway_binary), "token", "--secret-file", str(secret_file), "--worker", "demo-1",
                           "--ttl", "1h", "--scope", "read"], capture_output=True, text=True, timeout=20)
    assert made.returncode == 0, f"`tailgate token` failed (status {made.returncode}): {made.stderr.strip()}"
    token = made.stdout.strip()
    claims = claims_of(token)
    assert claims["workers"] == ["demo-1"] and claims["scope"] == "read" and 3500 < claims["exp"] - time.time() <= 3600
    gw = gateway("--demo", "2", "--auth-secret-file", str(secret_file))
    assert [w["id"] for w in gw.http("/api/workers", headers=bearer(token)).json()["workers"]] == ["demo-1"]


# --------------------------------------------------------------------------- API

def test_startup_line_says_whether_auth_is_on(gateway, secret_file):
    assert "auth on (tokens required)" in gateway("--auth-secret-file", str(secret_file)).output[0]
    assert "auth off" in gateway().output[0]


def test_api_requires_a_token_and_keeps_to_its_scope(gateway, secret_file):
    gw = gateway("--demo", "2", "--auth-secret-file", str(secret_file))
    expired = sign(["*"], ttl=1)
    demo1 = sign(["demo-1"])
    everything = sign(["*"])
    # No token, a bad one, a forged one, an expired one: 401 with the reason.
    missing = gw.http("/api/workers")
    assert missing.status == 401 and error_code(missing) == "auth_required"
    assert "Bearer" in missing.header("www-authenticate")
    assert error_code(gw.http("/api/workers", headers=bearer("not-a-token"))) == "token_invalid"
    forged = sign(["*"], secret=b"some other secret, 16+ bytes long")
    assert error_code(gw.http("/api/workers", headers=bearer(forged))) == "token_invalid"
    header, _, signature = demo1.split(".")
    tampered = header + "." + b64url(json.dumps({"workers": ["*"], "scope": "read", "exp": 9999999999},
                                                separators=(",", ":")).encode()) + "." + signature
    assert error_code(gw.http(f"/api/workers?access_token={tampered}")) == "token_invalid"
    for path in ("/api/workers", "/api/workers/demo-1", "/api/workers/demo-1/logs", "/api/stats"):
        reply = gw.http(path)
        assert reply.status == 401, path
    # Bearer or access_token.
    assert gw.http("/api/workers", headers=bearer(everything)).status == 200
    assert len(gw.http(f"/api/workers?access_token={everything}").json()["workers"]) == 2
    # A token for demo-1 sees demo-1 only.
    assert [w["id"] for w in gw.http("/api/workers", headers=bearer(demo1)).json()["workers"]] == ["demo-1"]
    assert gw.http("/api/workers/demo-1", headers=bearer(demo1)).status == 200
    assert gw.http("/api/workers/demo-1/logs?limit=2", headers=bearer(demo1)).status == 200
    for path in ("/api/workers/demo-2", "/api/workers/demo-2/logs"):
        reply = gw.http(path, headers=bearer(demo1))
        assert reply.status == 403 and error_code(reply) == "worker_not_allowed", path
    # A publish-only token does not read.
    reply = gw.http("/api/workers", headers=bearer(sign(["*"], scope="publish")))
    assert reply.status == 403 and error_code(reply) == "scope_not_allowed"
    # Static files and the health check stay open.
    assert gw.http("/").status == 200 and gw.http("/js/urls.js").status == 200
    assert gw.http("/console.html?worker=demo-1").status == 200
    assert gw.http("/healthz").json() == {"status": "ok"}
    # Expired.
    time.sleep(max(0.0, claims_of(expired)["exp"] - time.time() + 1.1))
    reply = gw.http("/api/workers", headers=bearer(expired))
    assert reply.status == 401 and error_code(reply) == "token_expired"
    # Tokens never appear in the gateway's output.
    time.sleep(0.2)
    for token in (expired, demo1, everything, tampered, forged):
        assert token not in gw.log() and token.split(".")[2] not in gw.log()


# --------------------------------------------------------------------------- streams, behind nginx

def test_streams_through_nginx_need_a_token_of_their_scope(gateway, nginx, secret_file):
    gw = gateway("--demo", "2", "--demo-rate", "20", "--auth-secret-file", str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-root.conf.template", {}))
    demo1 = sign(["demo-1"])
    base = f"ws://127.0.0.1:{proxy.port}/ws/workers"

    async def scenario():
        status, body = await refused(f"{base}/demo-1", port=proxy.port)
        assert (status, body["error"]["code"]) == (401, "auth_required")
        status, body = await refused(f"{base}/demo-1?access_token=garbage", port=proxy.port)
        assert (status, body["error"]["code"]) == (401, "token_invalid")
        status, body = await refused(f"{base}/demo-1?access_token={sign(['demo-1'], ttl=-5)}", port=proxy.port)
        assert (status, body["error"]["code"]) == (401, "token_expired")
        status, body = await refused(f"{base}/demo-2?access_token={demo1}", port=proxy.port)
        assert (status, body["error"]["code"]) == (403, "worker_not_allowed")
        status, body = await refused(f"{base}/demo-1?access_token={sign(['*'], scope='publish')}", port=proxy.port)
        assert (status, body["error"]["code"]) == (403, "scope_not_allowed")
        # As the browser UI does: ?access_token= on the stream URL.
        async with stream(f"{base}/demo-1?tail=3&access_token={demo1}", port=proxy.port) as ws:
            await read_records(ws, 10)
        # Scripts may use the header instead.
        async with stream(f"{base}/demo-2?tail=3", port=proxy.port, headers=bearer(sign(["demo-2"]))) as ws:
            await read_records(ws, 10)

    asyncio.run(scenario())
    # The API through nginx, and the UI's pages without a token (they carry the page's token along).
    assert [w["id"] for w in request(proxy.port, f"/api/workers?access_token={demo1}").json()["workers"]] == ["demo-1"]
    assert request(proxy.port, "/api/workers").status == 401
    assert request(proxy.port, f"/console.html?worker=demo-1&access_token={demo1}").status == 200
    request(proxy.port, f"/js/urls.js", headers={"Referer": f"http://x/console.html?access_token={demo1}&worker=demo-1"})
    # The gateway never prints the token; nginx's `tailgate` log format redacts it (URL and Referer).
    assert demo1 not in gw.log()
    # nginx writes a request's log line when it finalizes the request, which can be after the client
    # has read the response: wait for the last request's line.
    log = wait_until(lambda: "/js/urls.js" in proxy.access_log() and proxy.access_log(), 10, 0.05,
                     "nginx to log the last request")
    assert "access_token=REDACTED&worker=demo-1" in log and "/api/workers?access_token=REDACTED " in log
    assert demo1 not in log and demo1.split(".")[2] not in log


def test_publishing_through_nginx_needs_a_publish_token(gateway, nginx, secret_file):
    gw = gateway("--auth-secret-file", str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-root.conf.template", {}))
    body = b'{"message":"order filled","level":"NOTICE"}\n{"message":"flat"}\n'
    ndjson = {"Content-Type": "application/x-ndjson"}

    def publish(worker: str, headers: dict[str, str] | None = None, port: int | None = None):
        return request(port or proxy.port, f"/api/workers/{worker}/records", method="POST", body=body,
                       headers={**ndjson, **(headers or {})}, source="127.0.0.10" if port is None else None)

    reply = publish("bot-1")
    assert reply.status == 401 and error_code(reply) == "auth_required", reply.text
    reply = publish("bot-1", bearer(sign(["*"], scope="read")))
    assert reply.status == 403 and error_code(reply) == "scope_not_allowed", reply.text
    reply = publish("bot-1", bearer(sign(["bot-2"], scope="publish")))
    assert reply.status == 403 and error_code(reply) == "worker_not_allowed", reply.text
    token = sign(["bot-1"], scope="read,publish")
    reply = publish("bot-1", bearer(token))
    assert reply.status == 200 and reply.json()["accepted"] == 2, reply.text
    # A local process (127.0.0.1, a --publish-from address) needs no token.
    reply = publish("bot-1", port=gw.port)
    assert reply.status == 200 and reply.json()["first_seq"] == 3, reply.text
    # Through the proxy, --publish-from is checked against the forwarded client: client A is not local.
    stop = request(proxy.port, "/api/workers/bot-1/stop", method="POST", source="127.0.0.10")
    assert stop.status == 401
    stop = request(proxy.port, f"/api/workers/bot-1/stop?access_token={token}", method="POST")
    assert stop.status == 200 and stop.json()["stopped"] is True
    state = request(proxy.port, "/api/workers/bot-1", headers=bearer(token)).json()
    assert state["state"] == "stopped" and state["last_seq"] == 4


# --------------------------------------------------------------------------- expiry of an open stream

def test_open_stream_is_closed_with_1008_when_its_token_expires(gateway, nginx, secret_file, tmp_path):
    cert, key, tls = self_signed(tmp_path)
    gw = gateway("--demo", "1", "--demo-rate", "10", "--base-path", "/tailgate", "--auth-secret-file",
                 str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-tls-subpath.conf.template", {
        "TG_SERVER_NAME": "public.host", "TG_BASE_PATH": "/tailgate", "TG_PUBLIC_ORIGIN": "https://public.host",
        "TG_SSL_CERT": str(cert), "TG_SSL_KEY": str(key)}))
    tls_port = proxy.ports["TG_TLS_LISTEN"]

    async def follow(url: str, **options) -> tuple[int, float, int]:
        async with stream(url, **options) as ws:
            opened = time.monotonic()
            assert (await receive_json(ws))["type"] == "hello"
            records = 0
            try:
                while True:
                    message = await receive_json(ws, timeout=15)
                    records += len(message.get("records", []))
            except Exception:
                pass
            await asyncio.wait_for(ws.wait_closed(), 5)
            return ws.close_code, time.monotonic() - opened, records

    async def scenario():
        token = sign(["demo-1"], ttl=3)  # what `tailgate token --ttl 3s` makes
        expires_in = claims_of(token)["exp"] - time.time()
        direct, proxied = await asyncio.gather(
            follow(f"ws://127.0.0.1:{gw.port}/tailgate/ws/workers/demo-1?tail=0&access_token={token}", port=gw.port),
            follow(f"wss://public.host/tailgate/ws/workers/demo-1?tail=0&access_token={token}", port=tls_port, tls=tls))
        for code, lasted, records in (direct, proxied):
            assert code == 1008, (direct, proxied)
            assert records > 0  # it streamed until then
            # Closed at expiry (checked about once a second), not before it, not long after.
            assert expires_in - 1.5 <= lasted <= expires_in + 6, (lasted, expires_in)
        # The same token no longer opens a stream.
        status, body = await refused(f"ws://127.0.0.1:{gw.port}/ws/workers/demo-1?access_token={token}", port=gw.port)
        assert (status, body["error"]["code"]) == (401, "token_expired")

    asyncio.run(scenario())
