from __future__ import annotations

from pathlib import Path

import pytest

from brickwork import ConfigFileError, build, load_config
from brickwork.runtime.config import Config


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_YAML = """
plugins:
  sentiment:
    versions: ["1.0.0"]
    labels: {prod: "1.0.0"}
    policy:
      rate_limit: {requests: 2, window: 60}
      timeout: {total: 5}
routing:
  rules:
    - {name: reviews, match: {kind: "review*"}, plugin: sentiment@prod}
providers:
  openai: {base_url: "http://127.0.0.1:9/v1", api_key_env: BRICKWORK_TEST_KEY}
prices:
  "openai:gpt-4o-mini": {input: 0.15, output: 0.6}
"""


def test_yaml_and_toml_load_the_same(tmp_path: Path) -> None:
    from_yaml = load_config(write(tmp_path, "a.yaml", GOOD_YAML))
    toml = """
[plugins.sentiment]
versions = ["1.0.0"]
labels = {prod = "1.0.0"}
[plugins.sentiment.policy]
rate_limit = {requests = 2, window = 60}
timeout = {total = 5}
[[routing.rules]]
name = "reviews"
match = {kind = "review*"}
plugin = "sentiment@prod"
[providers.openai]
base_url = "http://127.0.0.1:9/v1"
api_key_env = "BRICKWORK_TEST_KEY"
[prices."openai:gpt-4o-mini"]
input = 0.15
output = 0.6
"""
    from_toml = load_config(write(tmp_path, "a.toml", toml))
    assert from_yaml == from_toml


async def test_config_drives_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, "a.yaml", GOOD_YAML))
    monkeypatch.setenv("BRICKWORK_TEST_KEY", "s3cret")
    assert config.providers["openai"].api_key() == "s3cret"
    runtime = build(config)
    entry = runtime.registry.resolve("sentiment@prod")
    assert entry.policy.rate_limit is not None
    assert entry.policy.rate_limit.requests == 2
    assert entry.policy.cache is not None  # class default kept
    routed = await runtime.handle({"input": "great stuff", "metadata": {"kind": "review-app"}})
    assert routed.route.method == "metadata"
    assert routed.route.rule == "reviews"
    assert routed.plugin == "sentiment"


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            "plugins: {sentiment: {policy: {timeout: {total: -1}}}}",
            ["plugins.sentiment.policy.timeout.total: Input should be greater than 0"],
        ),
        (
            "plugins: {sentiment: {policy: {retry: {bogus: 1}}}}",
            ["plugins.sentiment.policy.retry.bogus: Extra inputs are not permitted"],
        ),
        (
            "plugins: {sentiment: {policy: {rate_limit: {window: 5}}}}",
            ["plugins.sentiment.policy.rate_limit: rate_limit needs `requests` or `tokens`"],
        ),
        (
            "plugins: {sentiment: {labels: {prod: '1.0'}}}",
            ["plugins.sentiment.labels: '1.0' is not a semantic version"],
        ),
        (
            "plugins: {sentiment: {model: nocolon}}",
            ["plugins.sentiment.model: model id 'nocolon' must look like 'provider:model'"],
        ),
        ("plugins: {Bad: {}}", ["plugins.Bad.[key]: String should match pattern"]),
        ("routing: {default: 'x@@y'}", ["routing.default:"]),
        ("providers: {openai: {api_key: sk-live}}", ["providers.openai: 'api_key' looks like a secret"]),
        (
            "providers: {openai: {options: {password: x}}}",
            ["providers.openai: 'password' looks like a secret"],
        ),
        ("unknown_section: 1", ["unknown_section: Extra inputs are not permitted"]),
        ("- just\n- a list", ["the top level must be a mapping"]),
    ],
)
def test_bad_files_name_the_key_path(tmp_path: Path, text: str, problems: list[str]) -> None:
    with pytest.raises(ConfigFileError) as info:
        load_config(write(tmp_path, "bad.yaml", text))
    assert info.value.code == "config_invalid"
    for problem in problems:
        assert problem in info.value.message


def test_unreadable_or_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(write(tmp_path, "x.yaml", "plugins: [unclosed"))
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(write(tmp_path, "x.toml", "plugins = "))
    with pytest.raises(ConfigFileError, match=r"\.yaml, \.yml, \.json or \.toml"):
        load_config(write(tmp_path, "x.ini", "[a]"))


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "empty.yaml", "")) == Config()
