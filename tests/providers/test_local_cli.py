"""``brickwork models list | verify | prepare`` (the sub-app the main CLI mounts)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brickwork.cli.models import models_app
from brickwork.providers.local._catalog import QWEN, SMOLLM2

runner = CliRunner()


def test_every_command_has_help() -> None:
    for args in ([], ["list"], ["verify"], ["prepare"]):
        result = runner.invoke(models_app, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage" in result.output


def test_list_json_shows_the_catalog(tmp_path: Path) -> None:
    result = runner.invoke(models_app, ["list", "--json", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["qwen2.5-0.5b", "smollm2-135m", "e5-small"]
    qwen = rows["qwen2.5-0.5b"]
    assert qwen["aliases"] == ["qwen2.5-coder-0.5b"]
    assert qwen["size"] == 491_400_064
    assert qwen["sha256"] == QWEN.sha256
    assert (qwen["installed"], qwen["assembled"], qwen["verified"]) == (True, False, None)
    assert qwen["path"] == str(tmp_path / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert (rows["smollm2-135m"]["installed"], rows["smollm2-135m"]["assembled"]) == (True, True)

    table = runner.invoke(models_app, ["list", "--cache-dir", str(tmp_path)])
    assert table.exit_code == 0
    assert "local:qwen2.5-0.5b" in table.output
    assert "Coder-Instruct" in table.output
    assert "brickwork models prepare qwen2.5-0.5b" in table.output


def test_verify_a_good_model_exits_0() -> None:
    result = runner.invoke(models_app, ["verify", "smollm2-135m"])
    assert result.exit_code == 0, result.output
    assert f"ok local:smollm2-135m  sha256 {SMOLLM2.sha256}" in result.stdout


def test_verify_a_bad_file_exits_1_naming_both_hashes(tmp_path: Path) -> None:
    bad = tmp_path / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    bad.write_bytes(b"not the model")
    found = hashlib.sha256(b"not the model").hexdigest()

    result = runner.invoke(models_app, ["verify", "qwen2.5-coder-0.5b", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "error [model_verification_failed]: local:qwen2.5-0.5b" in result.stderr
    assert found in result.stderr
    assert QWEN.sha256 in result.stderr

    as_json = runner.invoke(models_app, ["verify", "qwen2.5-0.5b", "--cache-dir", str(tmp_path), "--json"])
    assert as_json.exit_code == 1
    [row] = json.loads(as_json.stdout)
    assert (row["verified"], row["found_sha256"]) == (False, found)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["verify", "gpt-5"], "model_not_found"),
        (["prepare", "smollm2-135m", "--all"], "invalid_request"),
        (["prepare", "gpt-5"], "model_not_found"),
    ],
)
def test_mistakes_are_typed_errors(args: list[str], code: str) -> None:
    result = runner.invoke(models_app, args)
    assert result.exit_code == 1
    assert f"error [{code}]: " in result.stderr
    assert "Traceback" not in result.output
    as_json = runner.invoke(models_app, [*args, "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"]["code"] == code


def test_prepare_a_model_used_in_place(tmp_path: Path) -> None:
    result = runner.invoke(models_app, ["prepare", "smollm2-135m", "--json", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["id"] == "smollm2-135m"
    assert row["verified"] is True
    assert row["path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert list(tmp_path.iterdir()) == []  # nothing to assemble: used where pip put it


def test_prepare_without_an_id_prepares_the_default_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from brickwork.cli import models

    # The default is Qwen (500 MB to assemble); the same path with the small model.
    monkeypatch.setattr(models, "DEFAULT_MODEL", "local:smollm2-135m")
    result = CliRunner().invoke(models.models_app, ["prepare", "--json", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "smollm2-135m" in result.stdout
