from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brickwork.cli import app

runner = CliRunner()


def test_every_command_has_help() -> None:
    for args in ([], ["plugins"], ["run"], ["config"], ["config", "check"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage" in result.output


def test_run_text_pretty() -> None:
    result = runner.invoke(app, ["run", "sentiment@1", "I love this phone"])
    assert result.exit_code == 0, result.output
    assert '"label": "positive"' in result.output
    assert "sentiment@1.0.0" in result.output
    assert "route explicit" in result.output


def test_run_json_from_stdin_with_version() -> None:
    result = runner.invoke(
        app, ["run", "sentiment", "--version", "1.0.0", "--json"], input="The food was awful\n"
    )
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["output"]["label"] == "negative"
    assert envelope["version"] == "1.0.0"
    assert envelope["route"] == {"method": "explicit", "ref": "sentiment@1.0.0", "rule": None, "scores": {}}


def test_run_structured_input_and_label(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("plugins: {sentiment: {labels: {prod: '1.0.0'}}}\n")
    result = runner.invoke(
        app,
        ["run", "sentiment", "--input", '{"text": "fine"}', "--label", "prod", "-c", str(config), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plugin"] == "sentiment"


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (["run", "sentiment", "--input", '{"txt": 1}'], None, "input_invalid"),
        (["run", "sentiment", "--input", "{nope"], None, "invalid_request"),
        (["run", "sentiment", "--input", "[1]"], None, "invalid_request"),
        (["run", "Bad!", "x"], None, "invalid_request"),
        (["run", "nosuch", "x"], None, "plugin_not_found"),
        (["run", "sentiment@9", "x"], None, "plugin_not_found"),
        (["run", "sentiment", "x", "--version", "1.0.0", "--label", "prod"], None, "invalid_request"),
        (["run", "sentiment", "x", "--input", "{}"], None, "invalid_request"),
        (["run", "sentiment", "--meta", "novalue", "x"], None, "invalid_request"),
        (["run", "sentiment"], "   ", "invalid_request"),
    ],
)
def test_bad_input_is_a_typed_error_not_a_traceback(args: list[str], stdin: str | None, code: str) -> None:
    result = runner.invoke(app, [*args, "--json"], input=stdin)
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["error"]["code"] == code
    assert "Traceback" not in result.output
    pretty = runner.invoke(app, args, input=stdin)
    assert pretty.exit_code == 1
    assert f"[{code}]" in pretty.stderr


def test_plugins_table_and_json() -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["sentiment"]["versions"] == ["1.0.0", "2.0.0"]
    assert rows["sentiment"]["default"] == "2.0.0"  # the model version; @1 is its fallback
    assert "fallback → sentiment@1.0.0" in rows["sentiment"]["policy"]
    assert "hello" in rows  # the third-party package, through its entry point
    table = runner.invoke(app, ["plugins"])
    assert table.exit_code == 0
    assert "sentiment" in table.output
    assert "hello" in table.output


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("plugins: {sentiment: {labels: {prod: '1.0.0'}}, ghost: {}}\n")
    result = runner.invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    assert "plugins.ghost: no such plugin is installed" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("plugins: {sentiment: {policy: {timeout: {total: 0}}}}\n")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "plugins.sentiment.policy.timeout.total: Input should be greater than 0" in result.stderr


def test_console_script_runs_in_a_fresh_process() -> None:
    exe = Path(sys.executable).with_name("brickwork")
    proc = subprocess.run(
        [str(exe), "run", "sentiment@1", "--json"],
        input="What a wonderful day",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"]["label"] == "positive"


def test_serve_runs_the_gateway_program_with_every_argument() -> None:
    from brickwork.cli.serve import gateway_argv

    assert gateway_argv(["-c", "b.yaml", "--port", "9000", "--help"]) == [
        sys.executable,
        "-m",
        "brickwork.gateway",
        "-c",
        "b.yaml",
        "--port",
        "9000",
        "--help",
    ]


def test_serve_help_is_the_gateways_own() -> None:
    exe = Path(sys.executable).with_name("brickwork")
    proc = subprocess.run(
        [str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: brickwork serve [OPTIONS]" in proc.stdout
    for option in ("--config", "--port", "--graceful-timeout", "--audit"):
        assert option in proc.stdout


def test_serve_reports_a_bad_option_as_a_usage_error() -> None:
    exe = Path(sys.executable).with_name("brickwork")
    proc = subprocess.run(
        [str(exe), "serve", "--no-such-option"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert "--no-such-option" in proc.stderr
