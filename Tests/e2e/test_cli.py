"""The command line: help text, refusal of bad flags, the start-up line."""

import re
import signal
import subprocess

import pytest

# Every flag of the contract's command line (shared PROTOCOL.md, "Command line").
PROTOCOL_FLAGS = [
    "--host", "--port", "--demo", "--demo-rate", "--event-loops", "--ring-records", "--ring-bytes",
    "--default-tail", "--max-connections", "--max-subscribers-per-worker", "--max-connections-per-ip",
    "--allowed-origin", "--deflate", "--no-deflate", "--public-dir",
]


def run(binary, *args, timeout=15):
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_serve_help_explains_every_protocol_flag(gateway_binary):
    result = run(gateway_binary, "serve", "--help")
    assert result.returncode == 0, result.stderr
    flags_in_help = set(re.findall(r"--[a-z][a-z0-9-]*", result.stdout))
    missing = [flag for flag in PROTOCOL_FLAGS if flag not in flags_in_help]
    assert not missing, f"`tailgate serve --help` does not mention {missing}:\n{result.stdout}"


def test_top_level_help_names_serve(gateway_binary):
    result = run(gateway_binary, "--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


@pytest.mark.parametrize("args, flag", [
    (["--demo-rate", "0"], "--demo-rate"),
    (["--ring-bytes", "12XB"], "--ring-bytes"),
    (["--port", "70000"], "--port"),
    (["--event-loops", "0"], "--event-loops"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_flag_is_refused_with_a_clear_message(gateway_binary, args, flag):
    # `--port 0` first so that a flag wrongly accepted does not take port 8080 (later flags win).
    try:
        result = run(gateway_binary, "serve", "--port", "0", *args, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`tailgate serve {' '.join(args)}` was accepted: it started serving")
    assert result.returncode > 0, f"exit status {result.returncode} for {args}"
    message = result.stderr + result.stdout
    assert "Error" in message and flag in message, f"unclear message for {args}:\n{message}"
    assert "Fatal error" not in message and "Stack dump" not in message, message


def test_start_up_line_names_the_chosen_port(gateway):
    gw = gateway()
    assert 0 < gw.port < 65536
    start_line = next(line for line in gw.output if "listening on" in line)
    assert start_line.startswith(f"tailgate listening on http://127.0.0.1:{gw.port}/"), start_line
    health = gw.http("/healthz")
    assert health.status == 200
    assert health.json() == {"status": "ok"}


def test_sigterm_right_after_the_start_up_line_exits_0(gateway_binary, tmp_path):
    # Supervisors and scripts take the start-up line as "ready"; a SIGTERM from then on must be
    # honoured: exit status 0 (not death by the signal), promptly (not lost).
    for attempt in range(10):
        proc = subprocess.Popen([str(gateway_binary), "serve", "--port", "0", "--demo", "1",
                                 "--data-dir", str(tmp_path / f"data-{attempt}")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            line = proc.stdout.readline()
            assert "listening on" in line, line
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pytest.fail(f"attempt {attempt + 1}: SIGTERM sent right after the start-up line was lost "
                            "(still running after 5 s)")
            assert status == 0, (f"attempt {attempt + 1}: exit status {status} "
                                 f"({'killed by the signal' if status < 0 else 'error'}) after SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
