"""The one unknown-key check for every config table (GraphSpec, ModelConfig, run configs, perturb
and sweep settings): a misspelt key is an error naming it and listing the known ones."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable


def reject_unknown_keys(known: type | Iterable[str], values, error: type[Exception], what: str) -> None:
    """Raise `error` naming every key of `values` that is not known.

    `known` is a dataclass (its field names) or the names themselves; `what` names the table in
    the message ("spec", "[model]", ...).
    """
    if dataclasses.is_dataclass(known):
        names = {f.name for f in dataclasses.fields(known)}
    else:
        names = set(known)
    unknown = sorted(set(values) - names)
    if unknown:
        raise error(f"unknown {what} key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")


def require_seeds(seeds, error: type[Exception], what: str = "seeds") -> list[int]:
    """`seeds` as given, if it is a non-empty list of distinct non-negative integers; else `error`
    (a repeated seed would count twice in every rate, mean and interval pooled over seeds)."""
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise error(f"{what} must be a non-empty list of non-negative integers, got {seeds!r}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise error(f"{what} must be distinct: {', '.join(map(str, repeated))} repeats in {seeds!r} "
                    "(it would count twice)")
    return seeds
