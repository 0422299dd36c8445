"""One parser for the values of templated parameters, used by the operator and the sensor alike.

Jinja renders a parameter to a string unless the DAG sets ``render_template_as_native_obj``:
``["a", "b"]`` arrives as the text ``"['a', 'b']"``, ``{"email": "E"}`` as a JSON or Python
literal, ``5`` as ``"5"`` and ``None`` as ``"None"``. Each function here accepts the native value
and its rendered text and returns the same result for both; text that cannot be read exactly
fails with a message naming the parameter, never a guess (a segment named ``"Lapsed, high
value"`` must stay one segment).

List parameters whose values pick people (the export's ``source``, ``list_ids``, ``list_names``,
``segments``) are lists only when a list was given: in the DAG, or by a template expression that
evaluated to one (``{{ params.segments }}`` of an array param). Text that merely looks like a
list (a run conf's ``"[2024]"``, a DAG's ``"[TEST] Newsletter"``) is one value, in either render
mode: :class:`ListExpressions` tells the two apart while the template renders.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import jinja2


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


def parse_list(value: Any, name: str, *, split_commas: bool = False, literals: bool = True) -> list[Any]:
    """A list parameter: a list, one value, or the text of a rendered list.

    A plain string is one value; with ``split_commas`` (for ids, which never hold a comma) a
    comma-separated string is split too. ``literals=False``: text is never read as a list, not
    even when it looks like one; it is one value exactly as given (for parameters rendered
    through :class:`ListExpressions`, which has already made a rendered list a list).
    """
    if is_unset(value):
        return []
    if isinstance(value, str) and not literals and not split_commas:
        return [value]
    if isinstance(value, str):
        text = value.strip()
        if literals and (text.startswith("[") or text.startswith("(")):
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


class ListExpressions:
    """While one template renders, whether a ``{{ }}`` expression in it evaluated to a list.

    Jinja's text rendering turns a list into its Python text, and its native rendering turns text
    that looks like a list into a list: neither result tells a rendered list from a conf string
    such as ``"[2024]"``. Jinja's ``finalize`` hook sees each expression's value before either
    happens; installed on the environment for the one render (``with ListExpressions(env):``),
    it records them. :meth:`list_value` then gives the parameter's value.
    """

    def __init__(self, env: jinja2.Environment) -> None:
        self._env = env
        self._previous = env.finalize
        self.values: list[Any] = []

    def __enter__(self) -> ListExpressions:
        self._env.finalize = self._finalize
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._env.finalize = self._previous

    @jinja2.pass_context
    def _finalize(self, context: jinja2.runtime.Context, value: Any) -> Any:
        previous = self._previous
        if previous is not None:  # a finalize the DAG configured runs first, as it would alone
            passed = getattr(getattr(previous, "jinja_pass_arg", None), "name", None)
            first = {"context": context, "eval_context": context.eval_ctx, "environment": context.environment}
            value = previous(first[passed], value) if passed in first else previous(value)
        self.values.append(value)
        return value

    @property
    def gave_list(self) -> bool:
        """Whether an expression of the template evaluated to a list (or tuple)."""
        return any(isinstance(value, (list, tuple)) for value in self.values)

    def list_value(self, template: str, rendered: Any, name: str) -> Any:
        """The rendered parameter: a real list when an expression gave one, else the text as rendered.

        Native rendering may have read text (an expression's ``"[2024]"``, or the ``template``
        itself) as a list: that text comes back, one value. The result goes to :func:`parse_list`
        with ``literals=False``.
        """
        if self.gave_list:
            return parse_list(rendered, name)
        if isinstance(rendered, (list, tuple, dict, set)):
            for value in (template, *self.values):
                if isinstance(value, str) and _native_reading(value) == rendered:
                    return value
            raise ValueError(
                f"{name}: the template's text was read as {type(rendered).__name__} by native rendering, "
                "but no expression of it gave a list. Render a list (e.g. {{ params.segments }} of an "
                "array param) for several values, or plain text for one value."
            )
        return rendered


def _native_reading(text: str) -> Any:
    """What native rendering makes of ``text`` alone (a Python literal), or ``text`` itself."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
