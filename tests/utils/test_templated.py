"""The one parser of templated values, fed by real Jinja rendering (text and native).

Airflow renders templated fields with a Jinja environment that turns the result into text,
unless the DAG sets ``render_template_as_native_obj`` (a ``NativeEnvironment``). Every value
below must come back exactly as given, from both, or fail naming the parameter.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2
import jinja2.nativetypes
import pytest
from airflow.sdk import DAG

from airflow_provider_constantcontact.operators.constantcontact import (
    ConstantContactSegmentExportOperator,
    normalize_list_ids,
    normalize_list_names,
)
from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor
from airflow_provider_constantcontact.utils.activities import normalize_activity_ids
from airflow_provider_constantcontact.utils.templated import (
    is_unset,
    optional_text,
    parse_bool,
    parse_list,
    parse_mapping,
    parse_number,
)

NASTY = [
    "Lapsed, high value",
    "back\\slash",
    "two\\\\backslashes",
    'Tom\'s "picks"',
    "None",
    "[bracketed]",
    "tab\tand\nnewline",
    "ünïcødé ✓",
    " padded ",
]


def render(template: str, native: bool, **values: Any) -> Any:
    environment = jinja2.nativetypes.NativeEnvironment() if native else jinja2.Environment()
    return environment.from_string(template).render(**values)


@pytest.mark.parametrize("native", [True, False])
def test_a_rendered_list_comes_back_exactly(native: bool) -> None:
    rendered = render("{{ params.segments }}", native, params={"segments": NASTY})
    assert isinstance(rendered, list) is native
    assert parse_list(rendered, "segments") == NASTY
    assert (
        parse_list(render("{{ params.segments | tojson }}", native, params={"segments": NASTY}), "s") == NASTY
    )


@pytest.mark.parametrize("native", [True, False])
def test_a_rendered_mapping_and_numbers_come_back_exactly(native: bool) -> None:
    mapping = {"email": "E, mail", "cf:tier": "Tier\\1"}
    for template in ("{{ m }}", "{{ m | tojson }}"):
        assert parse_mapping(render(template, native, m=mapping), "field_mapping") == mapping
    assert parse_number(render("{{ n }}", native, n=5), "max_contacts", integer=True) == 5
    assert parse_number(render("{{ r }}", native, r=0.1), "max_error_ratio", minimum=0, maximum=1) == 0.1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: parse_list("['Lapsed, high value'", "segments"),
            "segments is not a valid list: .* looks like one but cannot be read",
        ),
        (lambda: parse_list("('a', 'b'", "source"), "source is not a valid list"),
        (lambda: parse_list("['a'] + ['b']", "list_ids", split_commas=True), "list_ids is not a valid list"),
        (lambda: parse_mapping("{'email': ", "field_mapping"), "field_mapping is not a valid dict"),
        (lambda: parse_mapping("['email']", "field_mapping"), "field_mapping must be a dict"),
        (lambda: parse_number("five", "max_contacts", integer=True), "max_contacts must be a whole number"),
        (lambda: parse_number("1.5", "max_contacts", integer=True), "max_contacts must be a whole number"),
        (lambda: parse_number("nan", "max_error_ratio"), "max_error_ratio must be a finite number"),
        (lambda: parse_number("1.5", "max_error_ratio", minimum=0, maximum=1), "between 0 and 1"),
    ],
)
def test_text_that_cannot_be_read_exactly_fails_naming_the_parameter(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        call()


def rendered_export(
    native: bool, params: dict[str, Any], **templates: Any
) -> ConstantContactSegmentExportOperator:
    """An export operator in a DAG of that render mode, its fields rendered the way Airflow does."""
    options: dict[str, Any] = {
        "source": "/data/a.parquet",
        "list_ids": "id-1",
        "field_mapping": {"email": "Email"},
    }
    options.update(templates)
    with DAG("probe", schedule=None, render_template_as_native_obj=native):
        operator = ConstantContactSegmentExportOperator(task_id="export", **options)
    operator.render_template_fields({"params": params})  # type: ignore[arg-type]
    return operator


@pytest.mark.parametrize("native", [True, False])
def test_export_operator_parameters_rendered_either_way(native: bool) -> None:
    params = {
        "segments": NASTY,
        "list_ids": ["id-1", "id-2"],
        "sources": ["/data/a, b.parquet", "/data/c.parquet"],
        "mapping": {"email": "Email", "first_name": "First, name"},
        "max_contacts": 5,
    }
    operator = rendered_export(
        native,
        params,
        source="{{ params.sources }}",
        list_ids="{{ params.list_ids }}",
        field_mapping="{{ params.mapping | tojson }}",
        segment_column="Segment",
        segments="{{ params.segments }}",
        max_contacts="{{ params.max_contacts }}",
        max_error_ratio="{{ 0.1 }}",
        plan_only="{{ False }}",
    )
    settings = operator._settings()
    assert settings.segments == NASTY
    assert normalize_list_ids(operator.list_ids) == ["id-1", "id-2"]
    assert settings.plan.field_mapping == {"email": "Email", "first_name": "First, name"}
    assert settings.max_contacts == 5
    assert settings.plan_only is False
    assert operator._max_error_ratio() == 0.1
    assert parse_list(operator.source, "source", literals=False) == ["/data/a, b.parquet", "/data/c.parquet"]


LIST_LOOKING_TEXT = ["[2024]", "[TEST] Newsletter", "['vip', 'gold']", '["vip"]', "(a, b)"]


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("text", LIST_LOOKING_TEXT)
def test_text_that_looks_like_a_list_is_one_value_either_way(native: bool, text: str) -> None:
    """A conf string, a plain DAG string and a list holding it: one value, never read as a list."""
    from_conf = rendered_export(
        native,
        {"text": text},
        segment_column="S",
        segments="{{ params.text }}",
        list_names="{{ params.text }}",
    )
    assert from_conf._settings().segments == [text]
    assert normalize_list_names(from_conf.list_names) == [text]
    plain = rendered_export(native, {}, segment_column="S", segments=text, source=text)
    assert plain._settings().segments == [text]
    assert parse_list(plain.source, "source", literals=False) == [text]
    in_a_list = rendered_export(
        native, {"segs": [text, "b"]}, segment_column="S", segments="{{ params.segs }}"
    )
    assert in_a_list._settings().segments == [text, "b"]


@pytest.mark.parametrize("native", [True, False])
def test_an_expression_that_gives_a_list_is_a_list_either_way(native: bool) -> None:
    operator = rendered_export(
        native,
        {"a": "Lapsed, high value", "b": "[2024]"},
        segment_column="S",
        segments="{{ [params.a, params.b] }}",
        list_names="{{ (params.a,) }}",
    )
    assert operator._settings().segments == ["Lapsed, high value", "[2024]"]
    assert normalize_list_names(operator.list_names) == ["Lapsed, high value"]


@pytest.mark.parametrize("native", [True, False])
def test_sensor_activity_ids_and_max_error_ratio_rendered_either_way(native: bool) -> None:
    ids = ["a1", "b2"]
    sensor = ConstantContactImportSensor(
        task_id="wait",
        activity_ids=render("{{ ids }}", native, ids=ids),
        max_error_ratio=render("{{ r }}", native, r=0.25),
    )
    assert sensor._ids() == ids
    assert sensor._max_error_ratio() == 0.25
    # The export's whole summary, rendered: its activity ids.
    summary = {"activity_ids": ids, "rows_read": 3, "plan_only": False, "rejected": {}}
    assert normalize_activity_ids(render("{{ s }}", native, s=summary)) == ids
    assert normalize_activity_ids(json.dumps(summary)) == ids


def test_sensor_activity_ids_rendered_from_nothing_mean_no_activity() -> None:
    for rendered in ("None", "", "  ", "[]"):
        assert normalize_activity_ids(rendered) == []
    assert normalize_activity_ids(" one-id ") == ["one-id"]
    with pytest.raises(ValueError, match="max_error_ratio must be between 0 and 1"):
        ConstantContactImportSensor(task_id="wait", activity_ids="x", max_error_ratio="2")._max_error_ratio()


# ------------------------------------------------------------------ the parser on its own
PLAIN_SEGMENTS = ["Lapsed, high value", "back\\slash", "quote ' and \"", "ünï"]


@pytest.mark.parametrize("value", [PLAIN_SEGMENTS, str(PLAIN_SEGMENTS), json.dumps(PLAIN_SEGMENTS)])
def test_a_list_survives_rendering_exactly(value) -> None:
    # str(list) is what non-native Jinja renders; JSON is what a conf or Variable may hold.
    assert parse_list(value, "segments") == PLAIN_SEGMENTS


def test_a_plain_string_is_one_value_unless_commas_split_ids() -> None:
    assert parse_list("Lapsed, high value", "segments") == ["Lapsed, high value"]
    assert parse_list(" id-1 , 'id-2' ", "list_ids", split_commas=True) == ["id-1", "id-2"]
    assert parse_list(None, "segments") == []
    assert parse_list("None", "segments") == []
    assert parse_list(("a", "b"), "segments") == ["a", "b"]
    assert parse_list(iter(["a"]), "segments") == ["a"]
    assert parse_list(5, "segments") == [5]


def test_unreadable_list_text_fails_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"segments is not a valid list: .*render_template_as_native_obj"):
        parse_list("['unclosed", "segments")
    with pytest.raises(ValueError, match="segments must be a list, got str"):
        parse_list("('a')", "segments")


@pytest.mark.parametrize(
    "value",
    [
        {"email": "E", "first_name": None},
        "{'email': 'E', 'first_name': None}",
        '{"email": "E", "first_name": null}',
    ],
)
def test_a_mapping_survives_rendering(value) -> None:
    assert parse_mapping(value, "field_mapping") == {"email": "E", "first_name": None}


def test_a_mapping_that_is_not_one_fails_clearly() -> None:
    with pytest.raises(ValueError, match="field_mapping must be a dict, got list"):
        parse_mapping("['email']", "field_mapping")
    with pytest.raises(ValueError, match="field_mapping is not a valid dict"):
        parse_mapping("{email: E}", "field_mapping")


def test_numbers_from_text_and_their_bounds() -> None:
    assert parse_number("5", "max_contacts", integer=True) == 5
    assert parse_number(" 0.1 ", "max_error_ratio", minimum=0, maximum=1) == pytest.approx(0.1)
    assert parse_number("None", "max_contacts") is None
    assert parse_number("", "max_contacts") is None
    with pytest.raises(ValueError, match="max_contacts must be a whole number, got '5.5'"):
        parse_number("5.5", "max_contacts", integer=True)
    with pytest.raises(ValueError, match="max_error_ratio must be between 0 and 1, got 1.5"):
        parse_number("1.5", "max_error_ratio", minimum=0, maximum=1)
    with pytest.raises(ValueError, match="finite"):
        parse_number("nan", "max_error_ratio")
    with pytest.raises(TypeError, match="got True"):
        parse_number(True, "max_contacts")


def test_flags_and_optional_text() -> None:
    assert parse_bool("True", "plan_only") is True
    assert parse_bool("false", "plan_only") is False
    assert parse_bool(False, "plan_only") is False
    with pytest.raises(ValueError, match="plan_only must be true or false"):
        parse_bool("maybe", "plan_only")
    assert optional_text("  seg ", "segment_column") == "seg"
    assert optional_text("None", "segment_column") is None
    assert is_unset("  ")
    assert not is_unset(0)
