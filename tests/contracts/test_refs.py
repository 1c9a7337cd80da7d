from __future__ import annotations

import pytest

from brickwork.contracts import InvalidRequestError, PluginRef, Version


def test_semver_precedence() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "10.0.0",
    ]
    parsed = [Version.parse(v) for v in ordered]
    assert sorted(reversed(parsed)) == parsed
    assert str(Version.parse("1.2.3-rc.1+build.5")) == "1.2.3-rc.1+build.5"


@pytest.mark.parametrize("bad", ["1", "1.2", "01.2.3", "1.2.3.4", "v1.2.3", "", "1.2.x"])
def test_bad_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="semantic"):
        Version.parse(bad)


@pytest.mark.parametrize(
    ("text", "name", "selector", "kind"),
    [
        ("sentiment", "sentiment", None, None),
        ("sentiment@1.2.0", "sentiment", "1.2.0", "exact"),
        ("sentiment@1", "sentiment", "1", "partial"),
        ("sentiment@1.2", "sentiment", "1.2", "partial"),
        ("sentiment@prod", "sentiment", "prod", "label"),
        ("my-plugin_2@canary", "my-plugin_2", "canary", "label"),
    ],
)
def test_refs_parse(text: str, name: str, selector: str | None, kind: str | None) -> None:
    ref = PluginRef.parse(text)
    assert (ref.name, ref.selector) == (name, selector)
    assert ref.is_exact == (kind == "exact")
    assert ref.is_partial == (kind == "partial")
    assert ref.is_label == (kind == "label")
    assert str(ref) == text


@pytest.mark.parametrize("bad", ["", " ", "Sentiment", "9lives", "a@", "a@@b", "a@Prod!", "a b", "x" * 65])
def test_bad_refs_get_a_typed_error(bad: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        PluginRef.parse(bad)
    assert info.value.code == "invalid_request"


def test_partial_matching() -> None:
    v = Version.parse("1.4.2")
    assert v.matches_partial("1")
    assert v.matches_partial("1.4")
    assert not v.matches_partial("1.3")
    assert not v.matches_partial("2")
