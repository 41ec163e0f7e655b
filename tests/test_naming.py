"""Tests of manymodels.naming: readable, injective, path-safe entity names."""

from __future__ import annotations

import posixpath
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from manymodels.naming import (
    MAX_NAME_LENGTH,
    encode_strict,
    encode_value,
    entity_slug,
    legacy_model_name,
    model_name,
)

SLUG_LIMIT = MAX_NAME_LENGTH - 40
SLUG_CHARACTERS = re.compile(r"^[A-Za-z0-9_.=~-]*$")
HOSTILE_VALUES = [
    "../x", "..", ".", "a/b", "/etc/passwd", "a\\b", "a&b", "é", "a b", " ", "a:b", "a@b",
    "~", "~root", "a=b", "a.b", "_", "%2F", "a\nb", "a\x00b", "日本", "🍊", "x" * 500,
]  # fmt: skip

# No deadline: a slow first example (Hypothesis building its caches) is not a failure.
quick = settings(deadline=None)
key_text = st.text(max_size=12)
value_text = st.text(max_size=40)


def decode(slug: str) -> dict[str, str]:
    """Invert entity_slug for names short enough not to be cut (a test-only decoder)."""

    def unescape(text: str) -> str:
        return re.sub(
            r"(?:~[0-9A-F]{2})+",
            lambda match: bytes.fromhex(match.group(0).replace("~", "")).decode("utf-8"),
            text,
        )

    pairs = [pair.split("=") for pair in slug.split(".")] if slug else []
    assert all(len(pair) == 2 for pair in pairs), slug
    return {unescape(key): unescape(value) for key, value in pairs}


# --- readable names ---------------------------------------------------------------------------


def test_plain_values_stay_readable():
    keys = {"store": "12", "brand": "tropicana"}
    assert entity_slug(keys) == "store=12.brand=tropicana"
    assert model_name("oj", keys) == "oj.store=12.brand=tropicana"


def test_keys_keep_their_configured_order():
    assert entity_slug({"brand": "b", "store": "1"}) == "brand=b.store=1"


def test_non_string_values_are_named_by_their_text():
    assert entity_slug({"store": 12}) == entity_slug({"store": "12"}) == "store=12"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("A-100", "A-100"),
        ("u043", "u043"),
        ("user_id", "user_id"),
        ("minute.maid", "minute~2Emaid"),
        ("../x", "~2E~2E~2Fx"),
        ("a/b", "a~2Fb"),
        ("a&b", "a~26b"),
        ("é", "~C3~A9"),
        ("a b", "a~20b"),
        ("a:b", "a~3Ab"),
        ("a@b", "a~40b"),
        ("_", "_"),
        ("~", "~7E"),
        ("_7E", "_7E"),
        ("=", "~3D"),
        ("", ""),
    ],
)
def test_encode_value(value, encoded):
    assert encode_value(value) == encoded


def test_readme_example():
    assert (
        model_name("oj", {"store": "12", "brand": "minute.maid"})
        == "oj.store=12.brand=minute~2Emaid"
    )


def test_underscores_in_keys_and_values_stay_readable():
    assert model_name("sales", {"user_id": "u043"}) == "sales.user_id=u043"
    assert model_name("sales", {"user_id": "a_b-c"}) == "sales.user_id=a_b-c"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("user_id", "user_5Fid"), ("minute.maid", "minute_2Emaid"), ("~", "_7E"), ("A-1", "A-1")],
)
def test_strict_encoding_is_the_one_of_older_registries(value, encoded):
    assert encode_strict(value) == encoded


def test_legacy_name_is_the_old_escaped_name():
    assert legacy_model_name("sales", {"user_id": "u043"}) == "sales.user_5Fid=u043"
    assert legacy_model_name("oj", {"store": "12", "brand": "minute.maid"}) == (
        "oj.store=12.brand=minute_2Emaid"
    )
    # Plain keys and values were already readable: their names do not change.
    plain = {"store": "12", "brand": "tropicana"}
    assert legacy_model_name("oj", plain) == model_name("oj", plain)
    long = {"store": "x" * 1000}
    assert re.fullmatch(r"oj\.store=x+~[0-9a-f]{16}", legacy_model_name("oj", long))


# --- safe in paths and registry names ---------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_slug_cannot_leave_its_folder(value, tmp_path):
    slug = entity_slug({"brand": value})
    for forbidden in ("/", "\\", ":", "@", "..", " ", "\n", "\x00"):
        assert forbidden not in slug
    assert SLUG_CHARACTERS.match(slug)
    assert posixpath.normpath(slug) == slug
    assert (tmp_path / slug).resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_model_name_is_a_valid_registry_name(value):
    name = model_name("mm", {"brand": value})
    # MLflow refuses '/' and ':' and names that normalise to another path; '@' starts an alias.
    assert not set("/:@") & set(name)
    assert posixpath.normpath(name) == name
    assert len(name) <= MAX_NAME_LENGTH


@quick
@given(st.dictionaries(key_text, value_text, max_size=4))
def test_slug_uses_only_safe_characters(keys):
    slug = entity_slug(keys)
    assert SLUG_CHARACTERS.match(slug)
    assert ".." not in slug


# --- injective --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"k": "a.b"}, {"k": "a~2Eb"}),
        ({"k": "a_b"}, {"k": "a~5Fb"}),
        ({"k": "~"}, {"k": "~7E"}),
        ({"a": "b.c=d"}, {"a": "b", "c": "d"}),
        ({"a.b": "c"}, {"a": "b.c"}),
        ({"a=b": "c"}, {"a": "b=c"}),
        ({"k": "A"}, {"k": "a"}),
        ({"k": ""}, {"k": "_"}),
        ({"k": "é"}, {"k": "e"}),
        ({"a": "1", "b": "2"}, {"b": "2", "a": "1"}),
    ],
)
def test_lookalike_entities_get_distinct_names(first, second):
    assert entity_slug(first) != entity_slug(second)
    assert model_name("mm", first) != model_name("mm", second)


@quick
@given(st.dictionaries(key_text, value_text, max_size=3))
def test_slug_decodes_back_to_the_keys(keys):
    slug = entity_slug(keys)
    assume(len(slug) <= SLUG_LIMIT and "~~" not in slug)
    assert decode(slug) == keys


@quick
@given(
    st.lists(value_text, min_size=2, max_size=2),
    st.lists(value_text, min_size=2, max_size=2),
)
def test_different_values_give_different_names(first, second):
    assume(first != second)
    keys = ("store", "brand")
    assert entity_slug(dict(zip(keys, first, strict=True))) != entity_slug(
        dict(zip(keys, second, strict=True))
    )
    assert model_name("mm", dict(zip(keys, first, strict=True))) != model_name(
        "mm", dict(zip(keys, second, strict=True))
    )


@quick
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_different_long_values_give_different_names(first, second):
    assume(first != second)
    assert entity_slug({"k": "x" * 200 + first}) != entity_slug({"k": "x" * 200 + second})


# --- length cap -------------------------------------------------------------------------------


def test_long_slug_is_cut_and_ends_in_a_hash():
    slug = entity_slug({"store": "x" * 1000})
    assert len(slug) == SLUG_LIMIT
    assert re.fullmatch(r"store=x+~~[0-9a-f]{16}", slug)


def test_long_values_that_share_a_prefix_stay_distinct():
    first = entity_slug({"store": "x" * 1000 + "a"})
    second = entity_slug({"store": "x" * 1000 + "b"})
    assert first != second
    assert first[:-16] == second[:-16]


def test_cut_is_deterministic():
    keys = {"store": "é" * 300}
    assert entity_slug(keys) == entity_slug(dict(keys))
    assert model_name("mm", keys) == model_name("mm", dict(keys))


def test_slug_at_the_limit_is_not_cut():
    keys = {"k": "x" * (SLUG_LIMIT - 2)}
    assert entity_slug(keys) == "k=" + "x" * (SLUG_LIMIT - 2)
    longer = entity_slug({"k": "x" * (SLUG_LIMIT - 1)})
    assert len(longer) == SLUG_LIMIT
    assert "~~" in longer


def test_cut_name_never_equals_an_uncut_one():
    # An uncut slug never holds '~~' ('~' is escaped as '~7E'), and a cut one always does.
    assert "~~" not in entity_slug({"k": "~" * 10})
    assert "~~" in entity_slug({"k": "y" * 500})


def test_model_name_is_capped_with_a_long_prefix():
    name = model_name("p" * 300, {"store": "1"})
    assert len(name) == MAX_NAME_LENGTH
    assert re.fullmatch(r"p+~~[0-9a-f]{16}", name)
    assert name != model_name("p" * 300, {"store": "2"})


def test_model_name_of_a_long_entity_fits():
    name = model_name("oj", {"store": "1", "brand": "b" * 1000})
    assert len(name) <= MAX_NAME_LENGTH
    assert name.startswith("oj.store=1.brand=bbb")
