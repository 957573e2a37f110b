from pathlib import Path

import pytest

from namesclf.data.dataset import group_key, load_names, single_language, split_names, stats
from namesclf.errors import DataError

from .conftest import TINY, write_names_dir


def test_load_folder_dedupes_and_folds(tmp_path: Path) -> None:
    folder = write_names_dir(tmp_path / "d", {"Polish": ["Ślusàrski", "Ślusàrski", "Nowak", "123"],
                                               "Russian": ["Достоевский", "Nowak"]})
    data = load_names(folder)
    frame = data.frame
    assert data.n_lines == 6
    assert data.n_duplicates == 1
    assert data.n_empty == 1 and data.dropped_examples == ["123"]
    assert sorted(zip(frame.name, frame.language, strict=True)) == [
        ("Nowak", "Polish"), ("Nowak", "Russian"), ("Ślusàrski", "Polish"), ("Достоевский", "Russian")]
    assert set(frame.ascii) == {"Slusarski", "Nowak", "Dostoevskiy"}
    assert data.languages == ["Polish", "Russian"]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "Greek.txt").write_bytes(b"\xef\xbb\xbfPapadopoulos\r\nAntonopoulos\r\n\r\n")
    (tmp_path / "Irish.txt").write_bytes(b"Murphy\n")
    frame = load_names(tmp_path).frame
    assert sorted(frame.name) == ["Antonopoulos", "Murphy", "Papadopoulos"]


def test_csv_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text("name,language,extra\nSato,Japanese,x\nSato,Japanese,y\nRossi,Italian,z\n")
    (tmp_path / "n.tsv").write_text("language\tname\nJapanese\tSato\nItalian\tRossi\n")
    for f in ("n.csv", "n.tsv"):
        frame = load_names(tmp_path / f).frame
        assert sorted(zip(frame.name, frame.language, strict=True)) == [("Rossi", "Italian"), ("Sato", "Japanese")]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: p, "no <Language>.txt files"),
        (lambda p: (p / "A.txt").write_text("\n\n") and p, "has no names"),
        (lambda p: (p / "A.txt").write_bytes(b"ok\nbad\xff\n") and p, "line 2 is not valid UTF-8"),
        (lambda p: (p / "x.csv").write_text("who,what\na,b\n") and p / "x.csv", "missing column"),
        (lambda p: (p / "x.json").write_text("{}") and p / "x.json", "expected a folder"),
    ],
)
def test_load_errors(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_names(setup(tmp_path))


def test_split_is_grouped_seeded_and_complete(tiny_dir: Path) -> None:
    frame = load_names(tiny_dir).frame
    a, b = split_names(frame, seed=3), split_names(frame, seed=3)
    assert a.equals(b)
    assert set(a) <= {"train", "valid", "test"} and (a == "train").sum() > (a == "test").sum()
    assert not split_names(frame, seed=4).equals(a)


def test_same_folded_name_never_in_two_splits(tmp_path: Path) -> None:
    langs = {lang: names + [n.upper() for n in names] for lang, names in TINY.items()}
    langs["Polish"] = ["Ślusàrski", "Slusarski", "SLUSARSKI", "Nowak", "Kowalski", "Wojcik"]
    frame = load_names(write_names_dir(tmp_path / "d", langs)).frame
    for seed in range(5):
        split = split_names(frame, seed=seed)
        assert (split.groupby(group_key(frame.ascii)).nunique() == 1).all()


def test_single_language_marks_names_listed_under_one_language(tmp_path: Path) -> None:
    langs = {"English": ["Abel", "Smith"], "French": ["Abel", "Dubois"],
             "Polish": ["Ślusàrski", "Slusarski"]}  # two spellings, one folded name, one language
    frame = load_names(write_names_dir(tmp_path / "d", langs)).frame
    single = dict(zip(frame.name + "/" + frame.language, single_language(frame), strict=True))
    assert single == {"Abel/English": False, "Abel/French": False, "Smith/English": True, "Dubois/French": True,
                      "Ślusàrski/Polish": True, "Slusarski/Polish": True}


def test_real_data_facts_and_leak_free_split(real_data: Path) -> None:
    data = load_names(real_data)
    summary = stats(data)
    assert summary["languages"] == 18
    assert summary["lines"] == 20_075  # non-blank lines of the verified files
    assert summary["distinct_pairs"] == 18_016
    assert summary["per_language"]["Arabic"] == {**summary["per_language"]["Arabic"], "lines": 2000, "distinct": 108}
    split = split_names(data.frame, seed=0)
    keys = group_key(data.frame.ascii)
    sets = {s: set(keys[split == s]) for s in ("train", "valid", "test")}
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["valid"] and not sets["valid"] & sets["test"]
    sizes = split.value_counts(normalize=True)
    assert 0.78 < sizes["train"] < 0.82 and 0.08 < sizes["test"] < 0.12
    # every language is represented in the test split (stratified)
    assert data.frame[split == "test"].language.nunique() == 18
