"""Evaluate routing on a labelled set of requests with no plugin ref.

The dataset is a TSV with the header ``expected<TAB>text``: the plugin name the
request should reach, or ``-`` where the router should abstain (off-topic text).
Each text goes through :meth:`Router.route` only (nothing runs); a decision by
``default`` counts as an abstention, like a :class:`NoRouteError`. A
:class:`NoRouteError` that names the plugin the text matched (intent routing's
``details["matched"]``: the plugin needs more input than text, e.g. translate's
target language) counts as that plugin for accuracy, and is also counted apart
(``incomplete``): the router understood the request, but could not run it.

Run it on an installed runtime (intent routing over the e5 embedder)::

    brickwork eval route datasets/routing-dev.tsv [--config FILE]
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brickwork.contracts.errors import InvalidRequestError, NoRouteError
from brickwork.contracts.refs import PluginRef
from brickwork.contracts.request import Request
from brickwork.runtime.routing import Router

__all__ = ["ABSTAIN", "RoutingExample", "RoutingReport", "evaluate_routing", "load_routing_dataset"]

#: How an abstention is written in the dataset and in the confusion table.
ABSTAIN = "-"


@dataclass(frozen=True)
class RoutingExample:
    """One request text and the plugin it should reach (``None``: should abstain)."""

    text: str
    expected: str | None


@dataclass
class RoutingReport:
    """What the router did with a dataset.

    Attributes:
        total: rows evaluated.
        routable: rows that name a plugin.
        correct: routable rows routed to that plugin.
        runnable_correct: of those, the ones whose input also fitted the plugin.
        abstained: rows where the router abstained (error or default).
        false_abstain: routable rows it abstained on.
        false_route: rows that should abstain but were routed.
        misroute: routable rows routed to another plugin.
        incomplete: rows matched to a plugin whose input needs more than the text
            (counted in ``correct``/``misroute``/``false_route`` as that plugin).
        confusion: expected → predicted → count (``-`` for abstain).
        methods: decision method → count (``no_route`` for errors).
    """

    total: int = 0
    routable: int = 0
    correct: int = 0
    runnable_correct: int = 0
    abstained: int = 0
    false_abstain: int = 0
    false_route: int = 0
    misroute: int = 0
    incomplete: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    methods: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        """Correct routes over rows that name a plugin."""
        return self.correct / self.routable if self.routable else 0.0

    @property
    def runnable_accuracy(self) -> float:
        """Correct routes that could also run (not ``incomplete``) over rows that name a plugin."""
        return self.runnable_correct / self.routable if self.routable else 0.0

    @property
    def abstention_rate(self) -> float:
        return self.abstained / self.total if self.total else 0.0

    @property
    def off_topic(self) -> int:
        return self.total - self.routable

    @property
    def correct_abstain(self) -> int:
        return self.off_topic - self.false_route

    def add(
        self, expected: str | None, predicted: str | None, method: str, *, incomplete: bool = False
    ) -> None:
        self.total += 1
        self.methods[method] += 1
        self.incomplete += incomplete
        row = self.confusion.setdefault(expected or ABSTAIN, {})
        row[predicted or ABSTAIN] = row.get(predicted or ABSTAIN, 0) + 1
        if predicted is None:
            self.abstained += 1
        if expected is None:
            if predicted is not None:
                self.false_route += 1
            return
        self.routable += 1
        if predicted == expected:
            self.correct += 1
            self.runnable_correct += not incomplete
        elif predicted is None:
            self.false_abstain += 1
        else:
            self.misroute += 1

    def format(self) -> str:
        """A plain-text summary and confusion table."""
        lines = [
            f"accuracy {self.correct}/{self.routable} = {self.accuracy:.1%} on rows that name a plugin "
            f"(misrouted {self.misroute}, abstained {self.false_abstain}); "
            f"routed and runnable {self.runnable_correct}/{self.routable} = {self.runnable_accuracy:.1%}",
            f"matched a plugin whose input needs more than text: {self.incomplete}",
            f"off-topic: abstained on {self.correct_abstain}/{self.off_topic}, routed {self.false_route}",
            f"abstention rate {self.abstained}/{self.total} = {self.abstention_rate:.1%}",
            "methods: " + ", ".join(f"{k} {v}" for k, v in sorted(self.methods.items())),
        ]
        columns = sorted({p for row in self.confusion.values() for p in row} | set(self.confusion))
        width = max([len(c) for c in columns] + [8])
        lines.append("expected \\ routed".ljust(width + 2) + " ".join(c.rjust(width) for c in columns))
        for expected in sorted(self.confusion):
            row = self.confusion[expected]
            cells = " ".join(str(row.get(c, 0)).rjust(width) for c in columns)
            lines.append(expected.ljust(width + 2) + cells)
        return "\n".join(lines)


def load_routing_dataset(path: str | os.PathLike[str]) -> list[RoutingExample]:
    """Read a ``expected<TAB>text`` TSV (``-`` for abstain); blank lines are skipped."""
    file = Path(path)
    with file.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != ["expected", "text"]:
            raise InvalidRequestError(f"{file}: the header must be 'expected<TAB>text', got {header!r}")
        examples = []
        for number, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 2 or not row[1].strip():
                raise InvalidRequestError(f"{file}:{number}: expected two columns, expected and text")
            expected = row[0].strip()
            examples.append(RoutingExample(row[1].strip(), None if expected == ABSTAIN else expected))
    return examples


async def evaluate_routing(
    router: Router,
    examples: Sequence[RoutingExample],
    progress: Callable[[], None] | None = None,
) -> RoutingReport:
    """Route each example's text (no plugin named, no metadata) and score the decisions."""
    report = RoutingReport()
    for example in examples:
        incomplete = False
        try:
            decision = await router.route(Request(input=example.text))
        except NoRouteError as exc:
            matched = exc.details.get("matched")
            incomplete = isinstance(matched, str)
            predicted = matched if incomplete else None
            method = "needs_input" if incomplete else "no_route"
        else:
            method = decision.method
            predicted = None if method == "default" else PluginRef.parse(decision.ref).name
        report.add(example.expected, predicted, method, incomplete=incomplete)
        if progress is not None:
            progress()
    return report
