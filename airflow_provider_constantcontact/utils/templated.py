"""One parser for the values of templated parameters, used by the operator and the sensor alike.

Jinja renders a parameter to a string unless the DAG sets ``render_template_as_native_obj``:
``["a", "b"]`` arrives as the text ``"['a', 'b']"``, ``{"email": "E"}`` as a JSON or Python
literal, ``5`` as ``"5"`` and ``None`` as ``"None"``. Each function here accepts the native value
and its rendered text and returns the same result for both; text that cannot be read exactly
fails with a message naming the parameter, never a guess (a segment named ``"Lapsed, high
value"`` must stay one segment).
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any


def is_unset(value: Any) -> bool:
    """None, or a template that rendered nothing, only whitespace or ``"None"``."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def optional_text(value: Any, name: str) -> str | None:
    """A string parameter that may be unset."""
    if is_unset(value):
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}: {value!r}")
    return value.strip()


def _literal(text: str, name: str, kind: str) -> Any:
    """``text`` read as JSON, else as a Python literal (what non-native rendering produces)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise ValueError(
            f"{name} is not a valid {kind}: {text[:200]!r} looks like one but cannot be read. Give a "
            f"{kind} (JSON or Python syntax), or set render_template_as_native_obj=True on the DAG."
        ) from err


def parse_list(value: Any, name: str, *, split_commas: bool = False) -> list[Any]:
    """A list parameter: a list, one value, or the text of a rendered list.

    A plain string is one value; with ``split_commas`` (for ids, which never hold a comma) a
    comma-separated string is split too.
    """
    if is_unset(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") or text.startswith("("):
            parsed = _literal(text, name, "list")
            if not isinstance(parsed, (list, tuple)):
                raise ValueError(f"{name} must be a list, got {type(parsed).__name__}: {text[:200]!r}")
            return list(parsed)
        if split_commas:
            parts = (part.strip().strip("'\"").strip() for part in text.split(","))
            return [part for part in parts if part]
        return [text]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray, Mapping)):
        return list(value)
    return [value]


def parse_mapping(value: Any, name: str) -> dict[str, Any]:
    """A dict parameter, or the text of a rendered dict (JSON or Python literal)."""
    if isinstance(value, str):
        value = _literal(value.strip(), name, "dict")
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}: {str(value)[:200]!r}")
    return dict(value)


def parse_number(
    value: Any,
    name: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | int | None:
    """A number parameter that may be unset, or its rendered text, range-checked."""
    if is_unset(value):
        return None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    try:
        number = (
            (int(value) if isinstance(value, int) else int(str(value).strip())) if integer else float(value)
        )
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise ValueError(f"{name} must be {bounds}, got {number:g}")
    return number


def parse_bool(value: Any, name: str) -> bool:
    """A flag, or its rendered text (``True``/``False``/``true``/``false``/``1``/``0``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")
