"""info's suggestions: unused columns that could serve as item groups (with their cross-group rates) or user features."""

from __future__ import annotations

import pytest

from mfvsdnn import api
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig

# two users per language; each reads its own language's items except u1's one French item
INTER = ("user_id,item_id,lang,tag,age,noise\n"
         "u1,e1,en,a,30,1\nu1,e2,en,b,30,2\nu1,f1,fr,a,30,3\n"
         "u2,e1,en,a,40,4\nu2,e2,en,b,40,5\n"
         "u3,f1,fr,a,30,6\nu3,f2,fr,b,30,7\n"
         "u4,f2,fr,b,40,8\nu4,f1,fr,a,40,9\n")


def suggestions(tmp_path, text: str = INTER, **spec) -> dict:
    p = tmp_path / "d.csv"
    p.write_text(text)
    return api.info(p, ColumnSpec(**spec), SplitConfig(cold_users=0.0))["suggestions"]


def test_a_column_constant_per_item_is_an_item_group_with_its_known_rates(tmp_path):
    s = suggestions(tmp_path)
    by = {g["column"]: g for g in s["item_groups"]}
    assert set(by) == {"lang", "tag"}  # age and noise vary per item
    lang = by["lang"]
    # majority groups: u1 en (1 of 3 interactions cross), u2 en, u3 fr, u4 fr -> 1 of 9
    assert lang["natural_cross_group_rate"] == pytest.approx(1 / 9)
    # 2 of 4 items in each language, so random is outside the user's group half the time
    assert lang["random_cross_group_rate"] == pytest.approx(0.5)
    assert lang["folding_visible"] and lang["options"] == "--item-group-col lang"
    # tag: u1 majority a (items a,b,a -> 1 cross), u2 tie -> a (1), u3 tie -> a (1), u4 tie -> a (1): 4 of 9
    assert by["tag"]["natural_cross_group_rate"] == pytest.approx(4 / 9)
    assert not by["tag"]["folding_visible"]
    assert s["item_groups"][0]["column"] == "lang"  # the visible one first


def test_a_column_constant_per_user_is_a_user_feature(tmp_path):
    s = suggestions(tmp_path)
    assert [f["column"] for f in s["user_features"]] == ["age"]
    assert s["user_features_options"] == "--user-features age"


def test_used_columns_are_not_suggested_and_features_in_use_stay_in_the_options(tmp_path):
    s = suggestions(tmp_path, item_group_col="lang", user_features=("age",))
    assert [g["column"] for g in s["item_groups"]] == ["tag"]
    assert s["user_features"] == [] and "user_features_options" not in s


def test_side_table_columns_are_suggested_with_the_file_option(tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user_id,country,age\nu1,uk,30\nu2,uk,40\nu3,fr,30\n")
    s = suggestions(tmp_path, user_file=str(users))
    side = [f for f in s["user_features"] if f["side"] == "user"]
    assert [f["column"] for f in side] == ["country"]  # age is also in DATA: ambiguous, no candidate
    assert side[0]["users_without_value"] == 1  # u4 has no row
    assert s["user_features_options"] == f"--user-features age,country --user-file {users}"


def test_a_column_with_an_empty_field_or_one_value_is_no_group(tmp_path):
    text = INTER.replace("u4,f1,fr,a", "u4,f1,,a").replace(",noise", ",one").replace(",9\n", ",x\n")
    text = "\n".join(line.rsplit(",", 1)[0] + ",x" if k else line for k, line in enumerate(text.splitlines())) + "\n"
    s = suggestions(tmp_path, text)
    assert [g["column"] for g in s["item_groups"]] == ["tag"]
