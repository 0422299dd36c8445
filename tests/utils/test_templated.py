"""The one parser of rendered template values: native values and their text give the same result."""

from __future__ import annotations

import pytest

from airflow_provider_constantcontact.utils.templated import (
    is_unset,
    optional_text,
    parse_bool,
    parse_list,
    parse_mapping,
    parse_number,
)

SEGMENTS = ["Lapsed, high value", "back\\slash", "quote ' and \"", "ünï"]


@pytest.mark.parametrize("value", [SEGMENTS, str(SEGMENTS), __import__("json").dumps(SEGMENTS)])
def test_a_list_survives_rendering_exactly(value) -> None:
    # str(list) is what non-native Jinja renders; JSON is what a conf or Variable may hold.
    assert parse_list(value, "segments") == SEGMENTS


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
    assert parse_bool("True", "dry_run") is True
    assert parse_bool("false", "dry_run") is False
    assert parse_bool(False, "dry_run") is False
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        parse_bool("maybe", "dry_run")
    assert optional_text("  seg ", "segment_column") == "seg"
    assert optional_text("None", "segment_column") is None
    assert is_unset("  ")
    assert not is_unset(0)
