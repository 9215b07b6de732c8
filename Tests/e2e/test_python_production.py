"""The Python client `tailgate_logging` where real workers live (issue 17): forked worker pools,
configuration from the environment only, tokens (publish scope accepted, read scope refused without a
retry storm, an expired token refreshed by a provider), HTTPS through the tested nginx TLS template, and
basic auth through the nginx basic-auth template.

Real processes throughout: the gateway (`gateway` fixture of conftest.py, each with its own --data-dir),
nginx (nginx_support.py, from deploy/nginx/), and — where a process boundary matters (forking, the
environment, what reaches stderr) — the publishing program itself, a fresh interpreter that imports the
package from the source tree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from nginx_support import wait_until as wait_for

import pytest

from nginx_support import LOCAL_PUBLISHERS, PROXY_CIDR, htpasswd, nginx, self_signed  # noqa: F401  (nginx: the fixture)

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "clients" / "python"
SECRET = b"tailgate python production test secret 0123456789"
BEHIND_NGINX = ("--trusted-proxy", PROXY_CIDR, "--publish-from", LOCAL_PUBLISHERS)


# ----------------------------------------------------------------------------------------- helpers

@pytest.fixture
def tailgate_logging():
    """The package under test, from the source tree."""
    if str(PACKAGE_DIR) not in sys.path:
        sys.path.insert(0, str(PACKAGE_DIR))
    import tailgate_logging as module
    assert Path(module.__file__).resolve().is_relative_to(PACKAGE_DIR.resolve()), module.__file__
    return module


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def make_token(gateway_binary: Path, secret_file: Path, scope: str, worker: str = "*", ttl: str = "1h") -> str:
    """A token from `tailgate token` (what the README tells operators to run)."""
    made = subprocess.run([str(gateway_binary), "token", "--secret-file", str(secret_file), "--worker", worker,
                           "--scope", scope, "--ttl", ttl], capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def signed_token(scope: str, ttl: float, workers: list[str] | None = None) -> str:
    """An HS256 token signed here (docs/PROTOCOL.md, "Auth and proxies"): for an already expired one."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "default"}).encode())
    claims = b64(json.dumps({"workers": workers or ["*"], "scope": scope, "exp": int(time.time() + ttl)}).encode())
    signature = b64(hmac.new(SECRET, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def history(gw, worker: str, headers: dict[str, str] | None = None) -> list[dict]:
    """Every record of the worker's current run, from the gateway's export (disk and ring)."""
    result = gw.http(f"/api/workers/{worker}/logs?format=ndjson", headers=headers, timeout=60)
    assert result.status == 200, result.text
    return [json.loads(line) for line in result.text.splitlines() if line]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Waits until `predicate()` is true (and returns it), failing after `timeout` seconds."""
    return wait_for(predicate, timeout, interval, what)


def run_program(source: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `source` in a fresh interpreter (package from the source tree) with a clean TAILGATE_* env."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAILGATE_") and k != "SSL_CERT_FILE"}
    environment["PYTHONPATH"] = str(PACKAGE_DIR)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-c", source, *args], cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_logger(name: str, handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def refusal_reports(stderr: str) -> list[str]:
    """The handler's refusal reports on stderr (first and repeated)."""
    return [line for line in stderr.splitlines() if line.startswith("tailgate_logging: the gateway ")
            and (" refused the records of " in line or " still refuses the records of " in line)]


# ----------------------------------------------------------------------------------------- forking

POOL = r"""
import json, logging, multiprocessing, os, sys, threading
from tailgate_logging import TailgateHandler

url, worker = sys.argv[1], sys.argv[2]
CHILDREN, PER_CHILD = 4, 1000
# A long flush interval: the parent's records logged just before the fork are still queued at the fork.
handler = TailgateHandler(url, worker, flush_interval=0.5, queue_size=5000)
logger = logging.getLogger("pool")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
for i in range(200):
    logger.info("parent before fork %d", i, extra={"who": "parent", "i": i})
queued_at_fork = len(handler._queue) + len(handler._pending)
barrier = multiprocessing.get_context("fork").Barrier(CHILDREN)

def work(child):
    barrier.wait(30)  # every task in a child of its own: four children, each logging PER_CHILD records
    senders_before = sum(t.name == "tailgate-logging-sender" for t in threading.enumerate())
    for j in range(PER_CHILD):
        logger.info("child %d record %d", child, j,
                    extra={"who": "child", "child": child, "j": j, "order": {"side": "buy", "fills": [j, 1.5]}})
    return {"pid": os.getpid(), "publisher": handler.publisher, "senders_before_first_record": senders_before}

with multiprocessing.get_context("fork").Pool(CHILDREN) as pool:
    children = pool.map(work, range(CHILDREN), chunksize=1)
    for i in range(200):  # the parent goes on logging while its children run and exit
        logger.info("parent during pool %d", i, extra={"who": "parent", "i": 200 + i})
    pool.close()  # the children end normally: each flushes and closes its handler (a finalizer)
    pool.join()
flushed = handler.flush(30)
print(json.dumps({"children": children, "parent_publisher": handler.publisher, "queued_at_fork": queued_at_fork,
                  "flushed": flushed, "stats": handler.stats}))
handler.close()
"""


def test_a_fork_pool_of_4_children_each_logging_1000_records_publishes_all_4000_exactly_once(gateway):
    gw = gateway()
    worker = "py-pool"
    result = last_json(run_program(POOL, f"http://127.0.0.1:{gw.port}", worker, timeout=180))
    check_pool(result, history(gw, worker))


def check_pool(result: dict, records: list[dict]) -> None:
    """What the POOL program published: every record once, each process's in order, the parent's own."""
    children = result["children"]
    assert len({c["pid"] for c in children}) == 4, children
    publishers = {c["publisher"] for c in children} | {result["parent_publisher"]}
    assert len(publishers) == 5, f"a child published under another's id: {publishers}"
    # The child's sender is its own, started by its first record (none is inherited from the parent).
    assert all(c["senders_before_first_record"] == 0 for c in children), children
    assert result["queued_at_fork"] > 0, "the parent's records were all sent before the fork: nothing shown"
    assert result["flushed"] and result["stats"]["sent"] == 400 and result["stats"]["lost"] == 0, result

    children_records = [r for r in records if r["metadata"]["who"] == "child"]
    keys = Counter((int(r["metadata"]["child"]), int(r["metadata"]["j"])) for r in children_records)
    twice = [k for k, n in keys.items() if n > 1]
    missing = [(c, j) for c in range(4) for j in range(1000) if (c, j) not in keys]
    assert not twice and not missing, f"{len(twice)} duplicated (e.g. {twice[:5]}), {len(missing)} missing (e.g. {missing[:5]})"
    assert len(children_records) == 4000
    for child in range(4):  # each child's records in the order it logged them
        js = [int(r["metadata"]["j"]) for r in children_records if r["metadata"]["child"] == str(child)]
        assert js == list(range(1000)), f"child {child} out of order"
    # The parent's records — those queued at the fork included — once each, sent by the parent only.
    parent = [int(r["metadata"]["i"]) for r in records if r["metadata"]["who"] == "parent"]
    assert parent == list(range(400)), f"{len(parent)} parent records, {len(set(parent))} distinct"
    assert len(records) == 4400  # nothing else: no drop or rejection report
    # Nested extra values arrive as JSON text.
    sample = next(r for r in children_records if r["metadata"]["j"] == "7")
    assert sample["metadata"]["order"] == '{"side":"buy","fills":[7,1.5]}'
    assert json.loads(sample["metadata"]["order"]) == {"side": "buy", "fills": [7, 1.5]}


FORK = r"""
import json, logging, os, sys, threading, time
from tailgate_logging import TailgateHandler

url, worker = sys.argv[1], sys.argv[2]
handler = TailgateHandler(url, worker)
logger = logging.getLogger("fork")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
for i in range(50):
    logger.info("parent %d", i)
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the child: logs, then ends normally (atexit: logging.shutdown flushes the handler)
    os.close(read)
    senders = sum(t.name == "tailgate-logging-sender" for t in threading.enumerate())
    for i in range(300):
        logger.info("child %d", i)
    os.write(write, json.dumps({"publisher": handler.publisher, "senders_before": senders}).encode())
    os.close(write)
    sys.exit(0)
os.close(write)
child = json.loads(os.read(read, 65536))
_, status = os.waitpid(pid, 0)
for i in range(50, 100):
    logger.info("parent %d", i)
silent = os.fork()
if silent == 0:  # a child that never logs (as before an exec) runs no sender thread at all
    os._exit(0 if not any(t.name == "tailgate-logging-sender" for t in threading.enumerate()) else 3)
_, silent_status = os.waitpid(silent, 0)
print(json.dumps({"child": child, "child_status": status, "silent_status": silent_status, "flushed": handler.flush(30),
                  "parent_publisher": handler.publisher, "stats": handler.stats}))
handler.close()
"""


def test_os_fork_child_publishes_its_own_records_and_the_parent_is_unaffected(gateway):
    gw = gateway()
    result = last_json(run_program(FORK, f"http://127.0.0.1:{gw.port}", "py-fork"))
    assert result["child_status"] == 0 and result["silent_status"] == 0, result
    assert result["child"]["senders_before"] == 0 and result["child"]["publisher"] != result["parent_publisher"]
    assert result["flushed"] and result["stats"]["sent"] == 100 and result["stats"]["lost"] == 0, result
    messages = [r["message"] for r in history(gw, "py-fork")]
    assert sorted(messages) == sorted([f"parent {i}" for i in range(100)] + [f"child {i}" for i in range(300)])
    assert [m for m in messages if m.startswith("child")] == [f"child {i}" for i in range(300)]
    assert [m for m in messages if m.startswith("parent")] == [f"parent {i}" for i in range(100)]


# ----------------------------------------------------------------------------------------- environment, tokens

DICTCONFIG = r"""
import json, logging, logging.config

# What a dictConfig file of a deployed worker holds: the class, a level — no URL, worker id or token.
logging.config.dictConfig({
    "version": 1,
    "handlers": {"tailgate": {"class": "tailgate_logging.TailgateHandler", "level": "INFO"}},
    "root": {"handlers": ["tailgate"], "level": "DEBUG"},
})
handler = logging.getLogger().handlers[0]
log = logging.getLogger("strategy.env")
log.debug("not published: below the handler's level")
for i in range(100):
    log.info("from the environment %d", i, extra={"i": i, "order": {"id": i, "tags": ["a", "b"]}})
stopped = handler.stop_worker(exit_code=0)
print(json.dumps({"url": handler.url, "worker": handler.worker, "stats": handler.stats, "stopped": stopped}))
"""


def test_configuration_from_the_environment_only_with_a_publish_scope_token(gateway, gateway_binary, secret_file):
    gw = gateway("--auth-secret-file", str(secret_file))
    publish = make_token(gateway_binary, secret_file, "publish", worker="py-env")
    read = make_token(gateway_binary, secret_file, "read")
    run = run_program(DICTCONFIG, env={"TAILGATE_URL": f"http://127.0.0.1:{gw.port}", "TAILGATE_WORKER": "py-env",
                                       "TAILGATE_TOKEN": publish})
    result = last_json(run)
    assert run.stderr == "", run.stderr
    assert result["url"] == f"http://127.0.0.1:{gw.port}" and result["worker"] == "py-env"
    assert result["stats"]["sent"] == 100 and result["stats"]["refused"] == 0, result
    assert result["stopped"]["stopped"] is True and result["stopped"]["status"] == "succeeded", result
    records = history(gw, "py-env", bearer(read))
    assert [r["message"] for r in records] == [f"from the environment {i}" for i in range(100)]
    assert records[3]["metadata"] == {"i": "3", "order": '{"id":3,"tags":["a","b"]}'}
    assert records[3]["logger_name"] == "strategy.env"


REFUSED = r"""
import json, logging, sys, time
from tailgate_logging import TailgateHandler

handler = TailgateHandler()  # TAILGATE_URL, TAILGATE_WORKER, TAILGATE_TOKEN
log = logging.getLogger("refused")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(50):
    log.info("record %d", i)
time.sleep(float(sys.argv[1]))
started = time.monotonic()
handler.close()
print(json.dumps({"stats": handler.stats, "close_seconds": time.monotonic() - started}))
"""


def test_a_read_scope_token_is_refused_with_one_clear_report_and_no_retry_storm(gateway, gateway_binary, secret_file):
    gw = gateway("--auth-secret-file", str(secret_file))
    read = make_token(gateway_binary, secret_file, "read")

    def refusals() -> int:
        return gw.http("/api/stats", headers=bearer(read)).json()["refusals"]

    before = refusals()
    seconds = 7.0
    run = run_program(REFUSED, str(seconds), env={"TAILGATE_URL": f"http://127.0.0.1:{gw.port}",
                                                  "TAILGATE_WORKER": "py-refused", "TAILGATE_TOKEN": read})
    result = last_json(run)
    refused_requests = refusals() - before
    stats = result["stats"]
    reports = refusal_reports(run.stderr)
    # One report, saying what was refused, why, what to do, and what the handler does meanwhile.
    assert len(reports) == 1, run.stderr
    report = reports[0]
    assert f"http://127.0.0.1:{gw.port}" in report and "'py-refused'" in report
    assert "HTTP 403 scope_not_allowed" in report and "tailgate token --scope publish" in report
    assert "asks again after 1 s" in report and "at most once a minute" in report
    assert read not in run.stderr, "the token was printed"
    # No storm: attempts after 1, 2, 4 s (jittered down to 3/4) and one at close — not hundreds.
    assert 2 <= refused_requests <= 6, (refused_requests, stats)
    assert stats["refused"] == stats["requests"] == refused_requests, stats
    assert stats["sent"] == 0 and stats["lost"] == 50, stats
    assert result["close_seconds"] < 2.0, "close() kept retrying a refusal"
    assert "50 records for worker 'py-refused' could not be delivered" in run.stderr
    assert "scope_not_allowed" in run.stderr.splitlines()[-1]
    assert gw.http("/api/workers/py-refused", headers=bearer(read)).status == 404


def test_a_token_provider_is_asked_again_after_a_401(gateway, gateway_binary, secret_file, tailgate_logging, capfd):
    gw = gateway("--auth-secret-file", str(secret_file))
    tokens = [signed_token("publish", ttl=-60), make_token(gateway_binary, secret_file, "publish")]
    asked: list[str] = []

    def provider() -> str:  # an expired token first (as after a long weekend), a fresh one when asked again
        asked.append(tokens[min(len(asked), 1)])
        return asked[-1]

    handler = tailgate_logging.TailgateHandler(f"http://127.0.0.1:{gw.port}", "py-provider", token=provider)
    logger = make_logger("provider", handler)
    try:
        for i in range(20):
            logger.info("record %d", i)
        assert handler.flush(30)
        assert len(asked) == 2
        assert handler.stats["refused"] == 1 and handler.stats["token_refreshes"] == 2, handler.stats
        records = history(gw, "py-provider", bearer(make_token(gateway_binary, secret_file, "read")))
        assert [r["message"] for r in records] == [f"record {i}" for i in range(20)]
        assert handler.stop_worker()["stopped"] is True
    finally:
        handler.close()
    assert "tailgate_logging" not in capfd.readouterr().err  # a refreshed token is not a problem to report


def test_a_token_replaced_while_refused_is_picked_up_and_the_recovery_reported(gateway, gateway_binary, secret_file,
                                                                                tailgate_logging, capfd):
    gw = gateway("--auth-secret-file", str(secret_file))
    read = make_token(gateway_binary, secret_file, "read")
    publish = make_token(gateway_binary, secret_file, "publish")
    current = {"token": read}  # the wrong token first, as a secrets agent might hold it until fixed
    handler = tailgate_logging.TailgateHandler(f"http://127.0.0.1:{gw.port}", "py-replaced", token=lambda: current["token"])
    logger = make_logger("replaced", handler)
    try:
        for i in range(10):
            logger.info("record %d", i)
        wait_until(lambda: handler.stats["refused"] >= 1, 10, "the refusal")
        current["token"] = publish  # fixed: the handler asks its provider again at the next refusal
        assert handler.flush(15)
        assert [r["message"] for r in history(gw, "py-replaced", bearer(read))] == [f"record {i}" for i in range(10)]
    finally:
        handler.close()
    err = capfd.readouterr().err
    assert len(refusal_reports(err)) == 1 and "HTTP 403 scope_not_allowed" in err, err
    assert "accepts the records of worker 'py-replaced' again (after 2 refused attempts)" in err, err


def test_a_static_expired_token_is_reported_with_what_to_do(gateway, secret_file, tailgate_logging, capfd):
    gw = gateway("--auth-secret-file", str(secret_file))
    handler = tailgate_logging.TailgateHandler(f"http://127.0.0.1:{gw.port}", "py-expired",
                                               token=signed_token("publish", ttl=-60), timeout=1.0)
    logger = make_logger("expired", handler)
    try:
        logger.info("never published")
        wait_until(lambda: handler.stats["refused"] >= 1, 10, "the refusal")
    finally:
        handler.close()
    err = capfd.readouterr().err
    reports = refusal_reports(err)
    assert len(reports) == 1, err
    assert "HTTP 401 token_expired" in reports[0] and "a callable that returns a fresh one" in reports[0]


# ----------------------------------------------------------------------------------------- through nginx

def test_https_through_the_nginx_tls_template(gateway, gateway_binary, nginx, secret_file, tmp_path, tailgate_logging, capfd):
    cert, key, client_tls = self_signed(tmp_path)
    gw = gateway("--base-path", "/tailgate", "--auth-secret-file", str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-tls-subpath.conf.template", {
        "TG_SERVER_NAME": "public.host", "TG_BASE_PATH": "/tailgate", "TG_PUBLIC_ORIGIN": "https://public.host",
        "TG_SSL_CERT": str(cert), "TG_SSL_KEY": str(key)}))
    port = proxy.ports["TG_TLS_LISTEN"]
    publish = make_token(gateway_binary, secret_file, "publish")
    read = make_token(gateway_binary, secret_file, "read")
    url = f"https://127.0.0.1:{port}/tailgate"

    # In code: an ssl_context trusting the proxy's certificate.
    handler = tailgate_logging.TailgateHandler(url, "py-tls", token=publish, ssl_context=client_tls)
    logger = make_logger("tls", handler)
    try:
        for i in range(3000):
            logger.info("over TLS %d", i, extra={"i": i})
            if i % 500 == 499:
                time.sleep(0.1)  # several batches, so connection reuse is seen
        assert handler.flush(60)
        assert handler.stats["sent"] == 3000 and handler.stats["refused"] == 0, handler.stats
        # One connection carried every batch (an idle TLS connection is not mistaken for a closed one).
        assert handler.stats["reconnects"] == 1, handler.stats
        assert handler.stop_worker()["stopped"] is True
    finally:
        handler.close()
    assert [r["message"] for r in history(gw, "py-tls", bearer(read))] == [f"over TLS {i}" for i in range(3000)]
    assert "tailgate_logging" not in capfd.readouterr().err

    # From the environment only: TAILGATE_URL=https://…, and the CA through SSL_CERT_FILE.
    result = last_json(run_program(DICTCONFIG, env={"TAILGATE_URL": url, "TAILGATE_WORKER": "py-tls-env",
                                                    "TAILGATE_TOKEN": publish, "SSL_CERT_FILE": str(cert)}))
    assert result["stats"]["sent"] == 100 and result["stopped"]["stopped"] is True, result
    assert len(history(gw, "py-tls-env", bearer(read))) == 100

    # A fork pool over TLS: each child opens a TLS connection of its own (the parent's is not shared).
    result = last_json(run_program(POOL, url, "py-tls-pool", env={"TAILGATE_TOKEN": publish, "SSL_CERT_FILE": str(cert)},
                                   timeout=180))
    check_pool(result, history(gw, "py-tls-pool", bearer(read)))

    # A certificate the handler cannot verify: reported once, with what to do, and not retried in a storm.
    run = run_program(REFUSED, "2", env={"TAILGATE_URL": url, "TAILGATE_WORKER": "py-tls-untrusted",
                                         "TAILGATE_TOKEN": publish})
    reports = refusal_reports(run.stderr)
    assert len(reports) == 1 and "TLS: " in reports[0] and "certificate" in reports[0] and "ssl_context=" in reports[0], run.stderr
    assert last_json(run)["stats"]["reconnects"] == 0

    # Plain http:// to the TLS site is redirected: reported with the URL to use.
    run = run_program(REFUSED, "0.5", env={"TAILGATE_URL": f"http://127.0.0.1:{proxy.ports['TG_HTTP_LISTEN']}/tailgate",
                                           "TAILGATE_WORKER": "py-tls-redirect", "TAILGATE_TOKEN": publish})
    reports = refusal_reports(run.stderr)
    assert len(reports) == 1 and "HTTP 301 redirect to https://public.host/tailgate/api/workers/" in reports[0], run.stderr


def test_basic_auth_through_the_nginx_basic_auth_template_with_extra_headers(gateway, gateway_binary, nginx, secret_file,
                                                                            tailgate_logging, capfd):
    gw = gateway("--auth-secret-file", str(secret_file), *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-basic-auth.conf.template",
                            {"TG_HTPASSWD": str(htpasswd(nginx.dir / "htpasswd", "ops", "s3cret pass"))}))
    publish = make_token(gateway_binary, secret_file, "publish")
    read = make_token(gateway_binary, secret_file, "read")
    basic = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret pass").decode()}
    base = f"http://127.0.0.1:{proxy.port}"

    # The proxy's password in extra headers; the gateway's token then travels as ?access_token=.
    handler = tailgate_logging.TailgateHandler(base, "py-basic", token=publish, headers=basic)
    logger = make_logger("basic", handler)
    try:
        for i in range(500):
            logger.info("behind basic auth %d", i)
        assert handler.flush(30)
        assert handler.stats["sent"] == 500 and handler.stats["refused"] == 0, handler.stats
        assert handler.stop_worker(exit_code=3)["status"] == "failed"
    finally:
        handler.close()
    assert len(history(gw, "py-basic", bearer(read))) == 500
    assert "tailgate_logging" not in capfd.readouterr().err

    # The same from the environment: the password in TAILGATE_URL (user:password@, percent-encoded).
    result = last_json(run_program(DICTCONFIG, env={
        "TAILGATE_URL": f"http://ops:s3cret%20pass@127.0.0.1:{proxy.port}", "TAILGATE_WORKER": "py-basic-env",
        "TAILGATE_TOKEN": publish}))
    assert result["url"] == base, "the password is not part of handler.url"
    assert result["stats"]["sent"] == 100, result
    assert len(history(gw, "py-basic-env", bearer(read))) == 100

    # Without the password: nginx's 401, reported once with what to do.
    run = run_program(REFUSED, "2", env={"TAILGATE_URL": base, "TAILGATE_WORKER": "py-basic-missing",
                                         "TAILGATE_TOKEN": publish})
    reports = refusal_reports(run.stderr)
    assert len(reports) == 1, run.stderr
    assert "HTTP 401" in reports[0] and 'Basic realm="Tailgate"' in reports[0] and "headers={'Authorization'" in reports[0]
    assert last_json(run)["stats"]["refused"] <= 4

    # Through nginx without a token: relayed requests are not local publishers, the gateway wants one.
    run = run_program(REFUSED, "0.5", env={"TAILGATE_URL": f"http://ops:s3cret%20pass@127.0.0.1:{proxy.port}",
                                           "TAILGATE_WORKER": "py-basic-no-token"})
    reports = refusal_reports(run.stderr)
    assert len(reports) == 1 and "HTTP 401 auth_required" in reports[0] and "TAILGATE_TOKEN" in reports[0], run.stderr
    assert not re.search(r"s3cret", run.stderr), "the password was printed"
