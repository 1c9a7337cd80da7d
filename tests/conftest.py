"""Every test runs with real model providers forbidden, unless it opts in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brickwork.testing import forbid_real_providers


@pytest.fixture(autouse=True)
def _no_real_providers() -> Iterator[None]:
    with forbid_real_providers():
        yield
