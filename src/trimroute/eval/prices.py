"""Price tables: dollars per million input and output tokens, per model (DESIGN.md §6, "$ from a price table").

A file (YAML, TOML or JSON) maps a model name as configured to its prices::

    Qwen/Qwen2.5-1.5B-Instruct: {input: 0.02, output: 0.06}
    claude-3-7-sonnet:          {input: 3.0,  output: 15.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trimroute.config import load_file
from trimroute.errors import ConfigError
from trimroute.eval.metrics import Price
from trimroute.types import Role

__all__ = ["load_prices", "role_prices"]


def load_prices(path: str | Path) -> dict[str, Price]:
    """Read a price table; every entry needs ``input`` and ``output`` (non-negative $ per million tokens)."""
    data: Any = load_file(path)  # .json parses as YAML, of which JSON is a subset
    if not isinstance(data, Mapping):
        raise ConfigError(f"price table {str(path)!r} must map model names to {{input: $, output: $}}")
    table = {}
    for model, entry in data.items():
        if not isinstance(entry, Mapping) or set(entry) != {"input", "output"}:
            raise ConfigError(f"price of {model!r} in {str(path)!r} must be {{input: $/M tokens, output: $/M tokens}}")
        try:
            price = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, ValueError):
            raise ConfigError(f"price of {model!r} in {str(path)!r} must be numbers, got {dict(entry)}") from None
        if price.input_per_million < 0 or price.output_per_million < 0:
            raise ConfigError(f"price of {model!r} in {str(path)!r} is negative")
        table[str(model)] = price
    return table


def role_prices(table: Mapping[str, Price], models: Mapping[Role, str]) -> dict[Role, Price]:
    """Prices per role from the models the roles use. Weak and strong must be priced; the scorer may be."""
    out: dict[Role, Price] = {}
    for role, model in models.items():
        if model in table:
            out[role] = table[model]
        elif role != "scorer":
            raise ConfigError(
                f"the price table has no entry for the {role} model {model!r}; it lists: {', '.join(sorted(table))}"
            )
    return out
