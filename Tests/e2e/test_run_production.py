"""`tailgate run` and `tailgate pipe` where real workers live (issue 17): tokens, https through the tested
nginx TLS template, basic auth through nginx, configuration from the environment, refusals said once
and never retried, and live output — Python's lines before the program ends, `--pty` for colours and
for programs that buffer.

Tokens are made with `tailgate token` (what a deployment does). The gateways run with auth on and
`--publish-from 10.0.0.0/8` (or behind nginx, `--publish-from 127.0.0.1/32` with nginx relaying from
127.0.0.2), so that loopback publishers need a token and the token is what is tested.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from nginx_support import wait_until as wait_for

import pytest

from nginx_support import PROXY_CIDR, LOCAL_PUBLISHERS, htpasswd, nginx  # noqa: F401

TIMEOUT = 30.0
SECRET = b"correct horse battery staple 0123456789"
NOT_LOOPBACK = ("--publish-from", "10.0.0.0/8")  # loopback needs a token to publish
BEHIND_NGINX = ("--trusted-proxy", PROXY_CIDR, "--publish-from", LOCAL_PUBLISHERS)


# --------------------------------------------------------------------------- helpers

class Collected:
    """What a process writes on one stream, collected by a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        self.thread.join(0.5)
        return "\n".join(self.lines)


def clean_environment(**variables: str) -> dict[str, str]:
    """The test's environment without the variables tailgate or Python would pick up, plus `variables`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TAILGATE_") and k not in ("PYTHONUNBUFFERED", "SSL_CERT_FILE")}
    env.update(variables)
    return env


def start(binary, *args, env=None):
    proc = subprocess.Popen([str(binary), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                            env=env if env is not None else clean_environment())
    return proc, Collected(proc.stdout), Collected(proc.stderr)


def finish(proc, stderr: Collected, timeout=TIMEOUT) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("tailgate did not end in time; stderr:\n" + stderr.text())


def wait_until(condition, timeout=TIMEOUT, what="a condition", interval=0.05):
    """Waits until `condition()` is true (and returns it), failing after `timeout` seconds."""
    return wait_for(condition, timeout, interval, what)


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def token(gateway_binary, secret_file):
    """`token(worker, scope, ttl)`: a token made by `tailgate token`."""

    def make(worker: str = "*", scope: str = "publish", ttl: str = "1h") -> str:
        made = subprocess.run([str(gateway_binary), "token", "--secret-file", str(secret_file), "--worker", worker,
                               "--scope", scope, "--ttl", ttl], capture_output=True, text=True, timeout=20)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    return make


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def logs(gw, worker: str, read_token: str) -> list[dict]:
    answer = gw.http(f"/api/workers/{worker}/logs?format=ndjson", headers=bearer(read_token))
    assert answer.status == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def connections_accepted(gw, read_token: str) -> int:
    """Connections the gateway accepted before this request (which is one itself)."""
    return gw.http("/api/stats", headers=bearer(read_token)).json()["connections_accepted"] - 1


def refusal_lines(stderr: Collected) -> list[str]:
    return [line for line in stderr.lines if "refused to publish" in line]


# --------------------------------------------------------------------------- tokens

def test_run_publishes_with_a_publish_scope_token_from_the_environment_only(gateway, gateway_binary, secret_file, token):
    gw = gateway("--auth-secret-file", str(secret_file), *NOT_LOOPBACK)
    # Env-only configuration: no --worker, --gateway or --token on the command line.
    env = clean_environment(TAILGATE_URL=f"http://{gw.base}", TAILGATE_WORKER="job-env",
                            TAILGATE_TOKEN=token("job-env", "publish"))
    proc, stdout, stderr = start(gateway_binary, "run", "--", sys.executable, "-c",
                                 "print('first'); print('ERROR: second'); raise SystemExit(4)", env=env)
    assert finish(proc, stderr) == 4, stderr.text()
    reader = token("*", "read")
    assert [(r["level"], r["message"]) for r in logs(gw, "job-env", reader)] == [
        ("INFO", "first"), ("ERROR", "ERROR: second"), ("ERROR", "process exited with status 4")]
    worker = gw.http("/api/workers/job-env", headers=bearer(reader)).json()
    assert (worker["state"], worker["status"], worker["exit_code"]) == ("stopped", "failed", 4)
    assert not refusal_lines(stderr), stderr.text()


def test_run_refuses_a_read_scope_token_once_without_running_the_program(gateway, gateway_binary, secret_file, token, tmp_path):
    gw = gateway("--auth-secret-file", str(secret_file), *NOT_LOOPBACK)
    reader = token("*", "read")
    before = connections_accepted(gw, reader)
    marker = tmp_path / "ran"
    started = time.monotonic()
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "job-read", "--gateway", f"http://{gw.base}",
                                 "--token", token("job-read", "read"), "--", "touch", str(marker))
    assert finish(proc, stderr) == 2, stderr.text()
    assert time.monotonic() - started < 10
    assert not marker.exists(), "the program ran although the gateway refused"
    lines = refusal_lines(stderr)
    assert len(lines) == 1, stderr.text()
    assert "403 scope_not_allowed" in lines[0] and "does not allow publish" in lines[0], lines[0]
    assert "tailgate token --scope publish --worker job-read" in lines[0], lines[0]  # what to do about it
    assert "retrying" not in stderr.text() and "unreachable" not in stderr.text(), stderr.text()
    # One connection (the check before the program starts), no retries.
    assert connections_accepted(gw, reader) - before == 2  # the check, and the stats request before


def test_pipe_without_a_token_is_told_to_get_one(gateway, gateway_binary, secret_file):
    gw = gateway("--auth-secret-file", str(secret_file), *NOT_LOOPBACK)
    proc = subprocess.run([str(gateway_binary), "pipe", "--worker", "piped", "--gateway", f"http://{gw.base}"],
                          input="one\n", capture_output=True, text=True, timeout=TIMEOUT, env=clean_environment())
    assert proc.returncode == 2, proc.stderr
    assert "401 auth_required" in proc.stderr and "TAILGATE_TOKEN" in proc.stderr, proc.stderr
    assert proc.stderr.count("refused to publish") == 1, proc.stderr


EXPIRING = r"""
import time
print("before the token expires")
time.sleep(7)
print("after the token expired")
time.sleep(2)
print("still running")
"""


def test_an_expired_token_is_a_refusal_said_once_not_a_gateway_down(gateway, gateway_binary, secret_file, token):
    gw = gateway("--auth-secret-file", str(secret_file), *NOT_LOOPBACK)
    reader = token("*", "read")
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "expiring", "--gateway", f"http://{gw.base}",
                                 "--token", token("expiring", "publish", ttl="5s"), "--",
                                 sys.executable, "-c", EXPIRING)
    wait_until(lambda: any("refused to publish" in line for line in stderr.lines), timeout=20,
               what="the refusal of the expired token")
    accepted = connections_accepted(gw, reader)
    status = finish(proc, stderr)
    # The program ran to its end (its output still echoed), and tailgate says it could not publish.
    assert status == 2, stderr.text()
    assert "still running" in stdout.lines
    lines = refusal_lines(stderr)
    assert len(lines) == 1 and "401 token_expired" in lines[0], stderr.text()
    assert "retrying" not in stderr.text() and "unreachable" not in stderr.text(), stderr.text()
    # No retries after the refusal, while the program went on for 2 more seconds.
    assert connections_accepted(gw, reader) == accepted + 1  # the stats request before
    assert [r["message"] for r in logs(gw, "expiring", reader)] == ["before the token expires"]


# --------------------------------------------------------------------------- https and basic auth through nginx

def certificate_for(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (and key) naming `name` only: no IP address, so that the client's
    check of the name is what decides (swift-nio-ssl accepts a certificate that lists the address it
    connected to, whatever name was asked for)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True, timeout=60)
    key.chmod(0o644)
    return cert, key


@pytest.fixture
def tls_gateway(gateway, nginx, tmp_path, secret_file):
    """A gateway with auth on, under /tailgate of nginx's TLS template (deploy/nginx/site-tls-subpath),
    with a self-signed certificate for `localhost`. Returns (gateway, nginx's TLS port, certificate)."""
    cert, key = certificate_for(tmp_path, "localhost")
    gw = gateway("--base-path", "/tailgate", "--auth-secret-file", str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-tls-subpath.conf.template", {
        "TG_SERVER_NAME": "localhost", "TG_BASE_PATH": "/tailgate", "TG_PUBLIC_ORIGIN": "https://localhost",
        "TG_SSL_CERT": str(cert), "TG_SSL_KEY": str(key)}))
    return gw, proxy.ports["TG_TLS_LISTEN"], cert


def test_run_publishes_over_https_through_nginx_with_a_token(tls_gateway, gateway_binary, token):
    gw, port, cert = tls_gateway
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "secure", "--gateway",
                                 f"https://localhost:{port}/tailgate", "--cacert", str(cert),
                                 "--token", token("secure", "publish"), "--verbose", "--",
                                 sys.executable, "-c", "print('over TLS'); print('[warn] twice')")
    assert finish(proc, stderr) == 0, stderr.text()
    reader = token("*", "read")
    assert [(r["level"], r["message"]) for r in logs(gw, "secure", reader)] == [
        ("INFO", "over TLS"), ("WARNING", "[warn] twice"), ("INFO", "process exited with status 0")]
    run = gw.http("/api/workers/secure/runs", headers=bearer(reader)).json()["runs"][0]
    assert (run["status"], run["exit_code"]) == ("succeeded", 0), run
    assert "acknowledged" in stderr.text()  # the answers came back through nginx


def test_pipe_over_https_trusts_ssl_cert_file(tls_gateway, gateway_binary, token):
    gw, port, cert = tls_gateway
    env = clean_environment(SSL_CERT_FILE=str(cert), TAILGATE_TOKEN=token("piped-tls", "publish"))
    proc = subprocess.run([str(gateway_binary), "pipe", "--worker", "piped-tls", "--gateway", f"https://localhost:{port}/tailgate"],
                          input="".join(f"line {i}\n" for i in range(1, 501)), capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stderr
    messages = [r["message"] for r in logs(gw, "piped-tls", token("*", "read"))]
    assert messages == [f"line {i}" for i in range(1, 501)]


def test_https_refuses_an_untrusted_or_misnamed_certificate_without_retrying(tls_gateway, gateway_binary, token, tmp_path):
    gw, port, cert = tls_gateway
    publish = token("*", "publish")
    # No --cacert: the self-signed certificate is not in the system's store.
    untrusted = subprocess.run([str(gateway_binary), "pipe", "--worker", "w", "--gateway", f"https://localhost:{port}/tailgate",
                                "--token", publish], input="x\n", capture_output=True, text=True, timeout=TIMEOUT,
                               env=clean_environment())
    assert untrusted.returncode == 2, untrusted.stderr
    assert "not trusted" in untrusted.stderr and "--cacert" in untrusted.stderr, untrusted.stderr
    # Trusted, but the certificate names localhost, not 127.0.0.1.
    misnamed = subprocess.run([str(gateway_binary), "pipe", "--worker", "w", "--gateway", f"https://127.0.0.1:{port}/tailgate",
                               "--token", publish, "--cacert", str(cert)], input="x\n", capture_output=True, text=True,
                              timeout=TIMEOUT, env=clean_environment())
    assert misnamed.returncode == 2, misnamed.stderr
    assert "does not name 127.0.0.1" in misnamed.stderr, misnamed.stderr
    for result in (untrusted, misnamed):
        assert "retrying" not in result.stderr, result.stderr


def test_basic_auth_through_nginx_with_header_and_token(gateway, nginx, gateway_binary, secret_file, token):
    gw = gateway("--auth-secret-file", str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-basic-auth.conf.template",
                            {"TG_HTPASSWD": str(htpasswd(nginx.dir / "htpasswd", "ops", "s3cret pass"))}))

    def basic(password: str) -> str:
        return "Authorization: Basic " + base64.b64encode(f"ops:{password}".encode()).decode()

    env = clean_environment(TAILGATE_TOKEN=token("*", "publish"))
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "behind-basic", "--gateway", f"http://127.0.0.1:{proxy.port}",
                                 "--header", basic("s3cret pass"), "--", "echo", "through basic auth", env=env)
    assert finish(proc, stderr) == 0, stderr.text()
    # The same credentials in the URL, as curl and the Python handler take them.
    piped = subprocess.run([str(gateway_binary), "pipe", "--worker", "behind-basic-url", "--gateway",
                            f"http://ops:s3cret%20pass@127.0.0.1:{proxy.port}"], input="from the URL\n",
                           capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert piped.returncode == 0, piped.stderr
    reader = token("*", "read")
    assert [r["message"] for r in logs(gw, "behind-basic", reader)] == ["through basic auth", "process exited with status 0"]
    assert [r["message"] for r in logs(gw, "behind-basic-url", reader)] == ["from the URL"]
    assert gw.http("/api/workers/behind-basic-url", headers=bearer(reader)).json()["state"] == "stopped"
    # A wrong password: nginx's own 401, said to be the proxy's, with what to do.
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "behind-basic", "--gateway", f"http://127.0.0.1:{proxy.port}",
                                 "--header", basic("wrong"), "--", "echo", "never", env=env)
    assert finish(proc, stderr) == 2, stderr.text()
    lines = refusal_lines(stderr)
    assert len(lines) == 1 and "401" in lines[0] and "proxy" in lines[0] and "--header 'Authorization: Basic" in lines[0], lines


# --------------------------------------------------------------------------- live output

def test_python_lines_arrive_before_the_program_ends_without_flush(gateway, gateway_binary):
    gw = gateway()
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "live", "--gateway", f"http://{gw.base}",
                                 "--", "python3", "-c", "print(1); import time; time.sleep(3)")
    try:
        def published():
            answer = gw.http("/api/workers/live/logs?format=ndjson")
            return answer.status == 200 and any(json.loads(line)["message"] == "1" for line in answer.text.splitlines())
        wait_until(published, timeout=10, what="the line '1' at the gateway")
        assert proc.poll() is None, "the line arrived only when the program ended"
    finally:
        status = finish(proc, stderr)
    assert status == 0, stderr.text()


COLOURS = r"""
import sys
for stream, name in ((sys.stdout, "out"), (sys.stderr, "err")):
    if stream.isatty():
        stream.write(f"\033[32mgreen {name}\033[0m\n")
    else:
        stream.write(f"plain {name}\n")
"""


@pytest.mark.parametrize("pty", [True, False])
def test_pty_keeps_the_colours_of_a_program_that_colours_only_terminals(gateway, gateway_binary, pty):
    gw = gateway()
    worker = "coloured" if pty else "plain"
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", worker, "--gateway", f"http://{gw.base}",
                                 *(["--pty"] if pty else []), "--", sys.executable, "-c", COLOURS)
    assert finish(proc, stderr) == 0, stderr.text()
    records = [json.loads(line) for line in gw.http(f"/api/workers/{worker}/logs?format=ndjson").text.splitlines()]
    lines = {r["metadata"]["stream"]: r["message"] for r in records if "stream" in r["metadata"]}
    if pty:
        assert lines == {"stdout": "\x1b[32mgreen out\x1b[0m", "stderr": "\x1b[32mgreen err\x1b[0m"}, records
        assert "\x1b[32mgreen out\x1b[0m" in stdout.text()  # echoed as written, colours included
    else:
        assert lines == {"stdout": "plain out", "stderr": "plain err"}, records


def test_pty_makes_a_block_buffering_program_write_line_by_line(gateway, gateway_binary):
    # Perl (like C's stdio) holds its output back in blocks on a pipe, and has no switch for that.
    gw = gateway()
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "perl", "--gateway", f"http://{gw.base}", "--pty",
                                 "--", "perl", "-e", 'print "tick\\n"; sleep 3; print "tock\\n"; exit 3')
    try:
        def published():
            answer = gw.http("/api/workers/perl/logs?format=ndjson")
            return answer.status == 200 and any(json.loads(line)["message"] == "tick" for line in answer.text.splitlines())
        wait_until(published, timeout=10, what="'tick' at the gateway")
        assert proc.poll() is None, "the line arrived only when the program ended"
    finally:
        status = finish(proc, stderr)
    assert status == 3, stderr.text()
    messages = [json.loads(line)["message"] for line in gw.http("/api/workers/perl/logs?format=ndjson").text.splitlines()]
    assert messages == ["tick", "tock", "process exited with status 3"]
