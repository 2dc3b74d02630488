"""Whether a fallback config fits the version it stands in for (pure, no I/O).

A fallback answer is served as a prediction, so it must be one the version could
give: one of a classifier's classes, a number for a regressor. A rule may only
test a feature the version takes, with a value of that feature's kind.
"""

from __future__ import annotations

import math
from typing import Any

from harbourmaster.core.fallback import FallbackConfig
from harbourmaster.core.schema import ColumnSchema, InputSchema, OutputSchema

__all__ = ["fallback_misfits"]

_ORDERING = ("<", "<=", ">", ">=")
_MEMBERSHIP = ("in", "not_in")
_NUMERIC = ("integer", "float")


def fallback_misfits(config: FallbackConfig, inputs: InputSchema, output: OutputSchema) -> list[str]:
    """What in ``config`` the version (its input and output schemas) could not answer or test; empty if it fits."""
    problems: list[str] = []
    answers = [(f"rule {index + 1}'s output", rule.output) for index, rule in enumerate(config.rules)]
    if config.default is not None:
        answers.append(("the default", config.default))
    for what, value in answers:
        problem = _answer_misfit(value, output)
        if problem:
            problems.append(f"{what} {value!r} {problem}")
    for index, rule in enumerate(config.rules):
        for condition in rule.when:
            column = inputs.column(condition.feature)
            where = f"rule {index + 1} tests {condition.feature!r}"
            if column is None:
                problems.append(f"{where}, which is not an input of the version (inputs: {_some(inputs.names)})")
                continue
            problem = _condition_misfit(condition.op, condition.value, column)
            if problem:
                problems.append(f"{where} {problem}")
    return problems


def _answer_misfit(value: Any, output: OutputSchema) -> str | None:
    if output.task == "classification" and output.classes is not None:
        if not any(_same_label(value, label) for label in output.classes):
            return f"is not one of the classes {output.classes}"
    elif output.task == "regression" and not _is_number(value):
        return "is not a number (the version is a regressor)"
    return None


def _same_label(value: Any, label: Any) -> bool:
    """Equal as labels: ``1`` matches ``1`` and ``1.0``, never ``True`` (JSON keeps them apart)."""
    return isinstance(value, bool) == isinstance(label, bool) and value == label


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _condition_misfit(op: str, value: Any, column: ColumnSchema) -> str | None:
    if op in _ORDERING and column.dtype in _NUMERIC and not _is_number(value):
        return f"with {op} {value!r}: {column.name} is {column.dtype}, compare it with a number"
    if op in _MEMBERSHIP and not isinstance(value, list):
        return f"with {op} {value!r}: give a list of values"
    if op in ("==", "!=") and column.dtype in _NUMERIC and not _is_number(value):
        return f"with {op} {value!r}: {column.name} is {column.dtype}, compare it with a number"
    return None


def _some(names: list[str], shown: int = 8) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
