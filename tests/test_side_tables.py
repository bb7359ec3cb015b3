"""Side tables (--user-file, --item-file): joins on the id and their errors, under the interaction file's rules."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest
from helpers import cli_fails

from mfvsdnn.core.errors import DataError
from mfvsdnn.data import ColumnSpec, read_interactions
from mfvsdnn.data.split import SplitConfig, make_split

INTER = "user_id,item_id,rating\nu1,i1,5\nu1,i2,4\nu2,i2,5\nu2,i3,3\nu3,i1,4\n"
USERS = "user_id,country,team\nu1,fr,a\nu2,de,b\nu3,fr,a\n"
ITEMS = "item_id,genre\ni1,drama\ni2,comedy\ni3,drama\n"


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


def read(tmp_path, users: str | None = USERS, items: str | None = ITEMS, inter: str = INTER, **spec):
    uf = write(tmp_path, "users.csv", users) if users is not None else None
    itf = write(tmp_path, "items.csv", items) if items is not None else None
    return read_interactions(write(tmp_path, "inter.csv", inter),
                             ColumnSpec(user_file=str(uf) if uf else None, item_file=str(itf) if itf else None, **spec))


def feature_of(ds, name: str) -> dict[str, str]:
    return {u: ds.feature_values[name][c] for u, c in zip(ds.user_ids, ds.features[name], strict=True)}


def test_features_and_groups_come_from_the_side_tables(tmp_path):
    ds = read(tmp_path, user_features=("country",), item_group_col="genre", user_group_col="team")
    assert feature_of(ds, "country") == {"u1": "fr", "u2": "de", "u3": "fr"}
    groups = dict(zip(ds.item_ids, (ds.group_names[g] for g in ds.item_groups), strict=True))
    assert groups == {"i1": "drama", "i2": "comedy", "i3": "drama"}
    assert [ds.group_names[g] for g in ds.user_groups] == ["a", "b", "a"]
    assert ds.side_tables["user"]["ids_not_in_interactions"] == 0


def test_the_join_equals_the_same_columns_in_the_interaction_file(tmp_path):
    joined = read(tmp_path, user_features=("country",), item_group_col="genre")
    inter = pd.read_csv(tmp_path / "inter.csv", dtype=str)
    flat = inter.merge(pd.read_csv(tmp_path / "users.csv", dtype=str)).merge(pd.read_csv(tmp_path / "items.csv", dtype=str))
    flat.to_csv(tmp_path / "flat.csv", index=False)
    plain = read_interactions(tmp_path / "flat.csv", ColumnSpec(user_features=("country",), item_group_col="genre"))
    assert (joined.matrix != plain.matrix).nnz == 0
    assert feature_of(joined, "country") == feature_of(plain, "country")
    assert list(joined.item_groups) == list(plain.item_groups) and joined.group_names == plain.group_names


def test_side_ids_unknown_to_the_interactions_are_ignored_and_counted(tmp_path):
    ds = read(tmp_path, users=USERS + "u9,es,c\nu8,es,c\n", user_features=("country",))
    assert list(ds.user_ids) == ["u1", "u2", "u3"] and "es" not in ds.feature_values["country"]
    assert ds.side_tables["user"]["ids_not_in_interactions"] == 2


def test_users_without_a_row_get_the_missing_feature_value(tmp_path):
    ds = read(tmp_path, users="user_id,country\nu1,fr\nu3,\n", user_features=("country",))
    assert feature_of(ds, "country") == {"u1": "fr", "u2": "<missing>", "u3": "<missing>"}
    assert ds.side_tables["user"]["users_without_row"] == 1


def test_items_without_a_row_are_refused_for_a_group(tmp_path):
    with pytest.raises(DataError, match=r"items.csv: 1 items of the interactions have no row, e\.g\. 'i3'"):
        read(tmp_path, items="item_id,genre\ni1,drama\ni2,comedy\n", item_group_col="genre")


def test_an_empty_group_field_in_the_side_table_names_its_line(tmp_path):
    with pytest.raises(DataError, match=r"items.csv: line 3: column 'genre' is empty"):
        read(tmp_path, items="item_id,genre\ni1,drama\ni2,\ni3,drama\n", item_group_col="genre")


def test_a_user_twice_with_different_values_is_refused_with_both_lines(tmp_path):
    with pytest.raises(DataError, match=r"users.csv: column 'country' must be constant per user, but user 'u2' "
                                        r"has 'de' on line 3 and 'it' on line 5"):
        read(tmp_path, users=USERS + "u2,it,b\n", user_features=("country",))
    same = read(tmp_path, users=USERS + "u2,de,b\n", user_features=("country",))  # a repeat that agrees is fine
    assert feature_of(same, "country")["u2"] == "de"


def test_a_column_in_both_files_is_refused(tmp_path):
    inter = "user_id,item_id,country\nu1,i1,fr\nu2,i2,de\n"
    with pytest.raises(DataError, match="'country', a column of both .*inter.csv and .*users.csv"):
        read(tmp_path, inter=inter, user_features=("country",))


def test_a_column_in_neither_file_lists_both_files_columns(tmp_path):
    with pytest.raises(DataError, match=r"no column 'contry' .* in .*inter.csv or in .*users.csv.*Did you mean 'country'"):
        read(tmp_path, user_features=("contry",))


def test_an_item_column_cannot_be_a_user_feature(tmp_path):
    with pytest.raises(DataError, match="'genre', a column of .*items.csv \\(--item-file\\), which describes items"):
        read(tmp_path, user_features=("genre",))


def test_a_side_table_without_an_id_column_says_what_it_looked_for(tmp_path):
    with pytest.raises(DataError, match="users.csv: no user id column .*looked for 'user_id'"):
        read(tmp_path, users="person,country\nu1,fr\n", user_features=("country",))


def test_a_side_table_with_a_header_only_is_refused(tmp_path):
    with pytest.raises(DataError, match="users.csv: the file has a header but no rows"):
        read(tmp_path, users="user_id,country\n", user_features=("country",))


def test_recbole_atomic_files_tab_separated_with_typed_headers(tmp_path):
    users = "user_id:token\tage:token\tzip_code:token\nu1\t24\t85711\nu2\t53\t94043\nu3\t24\t32067\n"
    items = "item_id:token\tclass:token_seq\ni1\tAnimation Comedy\ni2\tAction\ni3\tAction\n"
    ds = read(tmp_path, users=users, items=items, user_features=("age",), item_group_col="class")
    assert feature_of(ds, "age") == {"u1": "24", "u2": "53", "u3": "24"}
    assert sorted(ds.group_names) == ["Action", "Animation Comedy"]


def test_id_aliases_of_side_tables_and_interactions(tmp_path):
    inter = "userID,placeID,rating\nU1,135085,2\nU2,135038,1\n"
    ds = read(tmp_path, inter=inter, users="userID,smoker\nU1,false\nU2,true\n",
              items="placeID,city\n135085,slp\n135038,cuernavaca\n", user_features=("smoker",), item_group_col="city")
    assert ds.columns.user_col == "userID" and ds.columns.item_col == "placeID"
    assert feature_of(ds, "smoker") == {"U1": "false", "U2": "true"}


def test_ids_match_under_the_whitespace_rule_and_compressed_side_files(tmp_path):
    (tmp_path / "users.csv.gz").write_bytes(gzip.compress(b"user_id,country\n u1 ,fr\nu2\t,de\nu3,fr\n"))
    ds = read_interactions(write(tmp_path, "inter.csv", INTER),
                           ColumnSpec(user_file=str(tmp_path / "users.csv.gz"), user_features=("country",)))
    assert feature_of(ds, "country") == {"u1": "fr", "u2": "de", "u3": "fr"}


def test_parquet_side_table_with_integer_ids(tmp_path):
    pd.DataFrame({"item_id": [1, 2, 3], "genre": ["x", "y", "x"]}).to_parquet(tmp_path / "items.parquet")
    inter = write(tmp_path, "inter.csv", "user_id,item_id\na,1\na,2\nb,3\n")
    ds = read_interactions(inter, ColumnSpec(item_file=str(tmp_path / "items.parquet"), item_group_col="genre"))
    assert [ds.group_names[g] for g in ds.item_groups] == ["x", "y", "x"]


def test_the_fingerprint_covers_the_side_tables_bytes_not_their_path(tmp_path):
    cfg = SplitConfig()
    base = make_split(read(tmp_path, user_features=("country",)), cfg).fingerprint
    (tmp_path / "elsewhere").mkdir()
    moved = read(tmp_path / "elsewhere", user_features=("country",))
    assert make_split(moved, cfg).fingerprint == base
    changed = read(tmp_path, users=USERS.replace("u3,fr", "u3,de"), user_features=("country",))
    assert make_split(changed, cfg).fingerprint != base
    assert make_split(read(tmp_path, users=None, items=None), cfg).fingerprint != base


def test_cli_options_and_their_errors(tmp_path):
    read(tmp_path)  # writes the three files
    cli_fails(["info", tmp_path / "inter.csv", "--user-file", tmp_path / "nope.csv"], "nope.csv: no such file")
    cli_fails(["info", tmp_path / "inter.csv", "--item-file", tmp_path / "items.csv", "--item-group-col", "genre",
               "--user-features", "genre"], "describes items")
