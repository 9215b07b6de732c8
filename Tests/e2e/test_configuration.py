"""`tailgate serve` configured from TAILGATE_<FLAG> variables and a `--config` file.

Precedence: command line > environment > file > default. Observed through `--print-config` (which
prints the effective value of every flag and its source) and through the gateway's behaviour (the
port and the settings named in the start-up line).
"""

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from nginx_support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

LINE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*) = (?P<value>.*?)\s+# (?P<source>.+)$")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any TAILGATE_ variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILGATE_")}
    env.update(extra)
    return env


def run(binary, *args, env=None, timeout=60):
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env if env is not None else clean_env())


def print_config(binary, *args, env=None) -> tuple[dict[str, tuple[str, str]], str]:
    """{flag: (value, source)} from `tailgate serve ARGS --print-config`, and the whole output."""
    result = run(binary, "serve", *args, "--print-config", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "listening on" not in result.stdout, "--print-config must exit, not serve"
    settings = {}
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        if match:
            settings[match["name"]] = (match["value"], match["source"])
    assert "port" in settings and "data-dir" in settings, result.stdout
    return settings, result.stdout


def write_config(tmp_path, text: str, name: str = "tailgate.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def start(binary, *args, env, timeout=60) -> tuple[subprocess.Popen, str]:
    """Starts `tailgate serve ARGS` and returns it with its start-up line."""
    proc = subprocess.Popen([str(binary), "serve", *args], env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "listening on" in line:
            return proc, line
    proc.wait(timeout=timeout)
    pytest.fail(f"no start-up line (exit status {proc.returncode}):\n{''.join(lines)}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_defaults_when_nothing_is_configured(gateway_binary):
    settings, output = print_config(gateway_binary)
    assert settings["port"] == ("8080", "default")
    assert settings["host"] == ("127.0.0.1", "default")
    assert settings["data-dir"] == ("./tailgate-data", "default")
    assert settings["deflate"] == ("true", "default")
    assert settings["ring-bytes"] == ("8388608", "default")
    assert "# config file: (none)" in output


def test_environment_only(gateway_binary, tmp_path):
    env = clean_env(TAILGATE_PORT="9123", TAILGATE_DATA_DIR=str(tmp_path / "data"),
                    TAILGATE_MEMORY_ONLY="true", TAILGATE_DEFLATE="false", TAILGATE_RING_BYTES="1MiB")
    settings, _ = print_config(gateway_binary, env=env)
    assert settings["port"] == ("9123", "environment TAILGATE_PORT")
    assert settings["data-dir"] == (str(tmp_path / "data"), "environment TAILGATE_DATA_DIR")
    assert settings["memory-only"] == ("true", "environment TAILGATE_MEMORY_ONLY")
    assert settings["deflate"] == ("false", "environment TAILGATE_DEFLATE")
    assert settings["ring-bytes"] == ("1048576", "environment TAILGATE_RING_BYTES")


def test_file_only(gateway_binary, tmp_path):
    config = write_config(tmp_path, f"""# Tailgate settings
port = 9124
data-dir = "{tmp_path / 'data dir'}"   # quoted: kept exactly
demo = 2          # a comment after a value

fsync = always
""")
    settings, output = print_config(gateway_binary, "--config", str(config))
    assert settings["port"] == ("9124", f"{config} line 2")
    assert settings["data-dir"] == (str(tmp_path / "data dir"), f"{config} line 3")
    assert settings["demo"] == ("2", f"{config} line 4")
    assert settings["fsync"] == ("always", f"{config} line 6")
    assert f"# config file: {config}" in output


def test_print_config_output_is_a_config_file(gateway_binary, tmp_path):
    env = clean_env(TAILGATE_PORT="9128", TAILGATE_ALLOWED_ORIGIN="https://a.example,https://b.example",
                    TAILGATE_BASE_PATH="/logs", TAILGATE_RING_BYTES="2MiB", TAILGATE_DEFLATE="off")
    first, output = print_config(gateway_binary, env=env)
    config = write_config(tmp_path, output)
    again, _ = print_config(gateway_binary, "--config", str(config))
    assert {name: value for name, (value, _) in again.items()} == {name: value for name, (value, _) in first.items()}
    assert again["port"] == ("9128", f"{config} line {output.splitlines().index(next(l for l in output.splitlines() if l.startswith('port ='))) + 1}")


def test_config_file_named_by_the_environment(gateway_binary, tmp_path):
    config = write_config(tmp_path, "port = 9125\n")
    settings, _ = print_config(gateway_binary, env=clean_env(TAILGATE_CONFIG=str(config)))
    assert settings["port"] == ("9125", f"{config} line 1")


def test_precedence_flag_over_environment_over_file_over_default(gateway_binary, tmp_path):
    config = write_config(tmp_path, "port = 1111\nring-records = 111\nmax-workers = 11\n")
    env = clean_env(TAILGATE_PORT="2222", TAILGATE_RING_RECORDS="222")
    settings, _ = print_config(gateway_binary, "--config", str(config), "--port", "3333", env=env)
    assert settings["port"] == ("3333", "command line")
    assert settings["ring-records"] == ("222", "environment TAILGATE_RING_RECORDS")
    assert settings["max-workers"] == ("11", f"{config} line 3")
    assert settings["retention"] == ("600", "default")

    # `--flag=value` is the command line too.
    settings, _ = print_config(gateway_binary, "--config", str(config), "--ring-records=333", env=env)
    assert settings["ring-records"] == ("333", "command line")

    settings, _ = print_config(gateway_binary, "--config", str(config), env=env)
    assert settings["port"] == ("2222", "environment TAILGATE_PORT")
    settings, _ = print_config(gateway_binary, "--config", str(config))
    assert settings["port"] == ("1111", f"{config} line 1")
    assert settings["ring-records"] == ("111", f"{config} line 2")


def test_precedence_is_what_the_gateway_does(gateway_binary, tmp_path):
    env_port, file_port = free_port(), free_port()
    config = write_config(tmp_path, f"port = {file_port}\ndemo = 2\ndeflate = false\nmemory-only = true\n")
    # The environment's port beats the file's; the file's other settings apply.
    proc, line = start(gateway_binary, "--config", str(config), env=clean_env(TAILGATE_PORT=str(env_port)))
    try:
        assert f"http://127.0.0.1:{env_port}/" in line, line
        assert "2 demo workers" in line and "compression off" in line and "history in memory only" in line, line
    finally:
        stop(proc)
    # The command line beats both (the flag inversion --deflate beats deflate = false).
    proc, line = start(gateway_binary, "--config", str(config), "--port", "0", "--deflate",
                       env=clean_env(TAILGATE_PORT=str(env_port), TAILGATE_DEMO="1"))
    try:
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line)[1])
        assert port not in (env_port, file_port), line
        assert "1 demo worker " in line and "compression on" in line, line
    finally:
        stop(proc)


def test_default_subcommand_takes_the_environment(gateway_binary):
    result = run(gateway_binary, "--print-config", env=clean_env(TAILGATE_PORT="9126"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^port = 9126\s+# environment TAILGATE_PORT$", result.stdout, re.M), result.stdout


def test_repeatable_flags(gateway_binary, tmp_path):
    config = write_config(tmp_path, "allowed-host = a.example, b.example\nallowed-host = c.example\n"
                                    "trusted-proxy = 10.0.0.0/8\n")
    env = clean_env(TAILGATE_ALLOWED_ORIGIN="https://one.example, https://two.example",
                    TAILGATE_PUBLISH_FROM="127.0.0.1/32,10.1.0.0/16")
    settings, _ = print_config(gateway_binary, "--config", str(config), "--trusted-proxy", "192.168.0.0/16", env=env)
    assert settings["allowed-origin"] == ("https://one.example, https://two.example", "environment TAILGATE_ALLOWED_ORIGIN")
    assert settings["publish-from"] == ("127.0.0.1/32, 10.1.0.0/16", "environment TAILGATE_PUBLISH_FROM")
    assert settings["allowed-host"] == ("a.example, b.example, c.example", f"{config} line 1")
    # A repeatable flag on the command line replaces the file's values, it does not add to them.
    assert settings["trusted-proxy"] == ("192.168.0.0/16", "command line")


def test_repeatable_values_are_checked_like_flags(gateway_binary):
    result = run(gateway_binary, "serve", "--print-config", env=clean_env(TAILGATE_PUBLISH_FROM="10.0.0.0/8, nonsense"))
    assert result.returncode != 0
    assert "nonsense" in result.stderr and "TAILGATE_PUBLISH_FROM" in result.stderr, result.stderr


@pytest.mark.parametrize("text, line, words", [
    ("port = 8081\nno-such-flag = 1\n", 2, ["unknown key 'no-such-flag'"]),
    ("# comment\n\nport 8081\n", 3, ["expected 'flag = value'"]),
    ("port = 1\nport = 2\n", 2, ["'port' is already set", "line 1"]),
    ("memory-only = maybe\n", 1, ["--memory-only takes true or false", "maybe"]),
    ("no-deflate = true\n", 1, ["deflate = false"]),
    ("print-config = true\n", 1, ["only be given on the command line"]),
])
def test_file_errors_name_the_file_line_and_key(gateway_binary, tmp_path, text, line, words):
    config = write_config(tmp_path, text)
    result = run(gateway_binary, "serve", "--config", str(config))
    assert result.returncode == 64, (result.returncode, result.stdout, result.stderr)
    assert f"{config} line {line}" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "Fatal error" not in result.stderr and "listening on" not in result.stdout


def test_malformed_values_name_their_source(gateway_binary, tmp_path):
    result = run(gateway_binary, "serve", env=clean_env(TAILGATE_PORT="eighty"))
    assert result.returncode == 64, result.stderr
    assert "--port" in result.stderr and "eighty" in result.stderr, result.stderr
    assert "environment TAILGATE_PORT" in result.stderr, result.stderr

    config = write_config(tmp_path, "\nring-bytes = 12XB\n")
    result = run(gateway_binary, "serve", "--config", str(config))
    assert result.returncode == 64, result.stderr
    assert "--ring-bytes" in result.stderr and f"{config} line 2" in result.stderr, result.stderr

    # A value the command's own check refuses (a valid number out of range).
    result = run(gateway_binary, "serve", env=clean_env(TAILGATE_EVENT_LOOPS="0"))
    assert result.returncode == 64, result.stderr
    assert "--event-loops" in result.stderr and "TAILGATE_EVENT_LOOPS" in result.stderr, result.stderr

    result = run(gateway_binary, "serve", env=clean_env(TAILGATE_MEMORY_ONLY="perhaps"))
    assert result.returncode == 64, result.stderr
    assert "TAILGATE_MEMORY_ONLY" in result.stderr and "true or false" in result.stderr, result.stderr
    assert "Fatal error" not in result.stderr


def test_missing_config_file(gateway_binary, tmp_path):
    result = run(gateway_binary, "serve", "--config", str(tmp_path / "absent.conf"))
    assert result.returncode == 64
    assert str(tmp_path / "absent.conf") in result.stderr, result.stderr


def test_unknown_environment_variables_are_ignored_and_listed(gateway_binary):
    env = clean_env(TAILGATE_NO_SUCH_FLAG="1", TAILGATE_GATEWAY="http://127.0.0.1:1/", TAILGATE_PORT="9127")
    settings, output = print_config(gateway_binary, env=env)
    assert settings["port"][0] == "9127"
    assert "# ignored: TAILGATE_NO_SUCH_FLAG" in output and "# ignored: TAILGATE_GATEWAY" in output


def test_print_config_redacts_secrets(gateway_binary, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"configuration-test-secret-do-not-print-0123456789abcdef\n")
    secret.chmod(0o600)
    config = write_config(tmp_path, f"auth-secret-file = {secret}\n")
    result = run(gateway_binary, "serve", "--config", str(config), "--print-config")
    assert result.returncode == 0, result.stderr
    assert "configuration-test-secret" not in result.stdout + result.stderr
    assert re.search(rf"^auth-secret-file = {re.escape(str(secret))}\s+# {re.escape(str(config))} line 1$",
                     result.stdout, re.M), result.stdout


@pytest.mark.parametrize("source", ["flag", "environment", "file"])
def test_print_config_hides_the_store_password(gateway_binary, tmp_path, source):
    url = "redis://fleet:store-password-do-not-print@127.0.0.1:6399/2"
    args: list[str] = []
    env = clean_env()
    if source == "flag":
        args = ["--store", url]
    elif source == "environment":
        env = clean_env(TAILGATE_STORE=url)
    else:
        args = ["--config", str(write_config(tmp_path, f"store = {url}\n"))]
    result = run(gateway_binary, "serve", *args, "--print-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "store-password" not in result.stdout + result.stderr
    assert re.search(r"^store = redis://fleet:\*\*\*@127\.0\.0\.1:6399/2\s+#", result.stdout, re.M), result.stdout
    # A URL without credentials is shown as it is; the lease TTL is a setting like any other.
    settings, _ = print_config(gateway_binary, "--store", "redis://127.0.0.1:6399", "--lease-ttl", "3")
    assert settings["store"][0] == "redis://127.0.0.1:6399" and settings["lease-ttl"][0] == "3.0", settings


def test_other_commands_ignore_serve_settings(gateway_binary):
    # Malformed serve settings in the environment do not concern token/run/pipe or help.
    env = clean_env(TAILGATE_PORT="not-a-port", TAILGATE_CONFIG="/nonexistent/tailgate.conf")
    for args in (["token", "--help"], ["run", "--help"], ["pipe", "--help"], ["--help"], ["serve", "--help"]):
        result = run(gateway_binary, *args, env=env)
        assert result.returncode == 0, (args, result.stderr)
