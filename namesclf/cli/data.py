"""``names data stats`` and ``names data fetch``: look at a data set, get the tutorial's or the
Wikipedia corpus.
"""

from __future__ import annotations

from pathlib import Path

import click

from namesclf.cli.console import NamesGroup, echo_json
from namesclf.errors import NamesError


@click.group(cls=NamesGroup)
def data() -> None:
    """Fetch the surname set and inspect data folders."""


@data.command("stats")
@click.argument("source", type=click.Path())
@click.option("--seed", default=0, show_default=True, help="Split seed (the split `names train --seed` uses).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def data_stats(source: str, seed: int, as_json: bool) -> None:
    """Lines, distinct names and cross-language names per language, and the split sizes.

    SOURCE is a folder of <Language>.txt files (one name per line) or a CSV/TSV with `name` and
    `language` columns.
    """
    from namesclf.data.dataset import load_names, stats

    summary = stats(load_names(source), seed=seed)
    if as_json:
        echo_json(summary)
        return
    rows = summary["per_language"]
    name_w = max(8, *(len(str(lang)) for lang in rows))  # widths from the data: 34 languages, 248,376 pairs
    num_w = max(6, len(f"{summary['lines']:,}"))
    click.echo(f"{'language':<{name_w}} {'lines':>{num_w}} {'distinct':>{num_w}} {'shared':>{num_w}} "
               f"{'train':>{num_w}} {'valid':>{num_w}} {'test':>{num_w}}")
    for lang, r in rows.items():
        click.echo(f"{lang:<{name_w}} " + " ".join(f"{r[k]:>{num_w},}" for k in ("lines", "distinct", "shared", "train",
                                                                                 "valid", "test")))
    click.echo(f"{'total':<{name_w}} {summary['lines']:>{num_w},} {summary['distinct_pairs']:>{num_w},}")
    sp = summary["splits"]
    click.echo(f"{summary['languages']} languages, {summary['lines']:,} lines, {summary['distinct_pairs']:,} distinct "
               f"(name, language) pairs ({summary['duplicates_dropped']:,} duplicate lines dropped), "
               f"{summary['names_in_several_languages']:,} folded names under more than one language")
    if summary["empty_dropped"]:
        click.echo(f"{summary['empty_dropped']:,} names had no letters after folding to ASCII and were dropped")
    click.echo(f"split (seed {seed}, grouped by folded name): train {sp['train']:,}, valid {sp['valid']:,}, "
               f"test {sp['test']:,}")


@data.command("fetch")
@click.argument("corpus", type=click.Choice(["names", "wikipedia"]), default="names", required=False)
@click.option("--from", "source", metavar="PATH_OR_URL",
              help="names: a local zip, a folder of <Language>.txt, or a URL (default: the PyTorch tutorial's "
                   "data.zip). wikipedia: a local name2nat-0.5.1 wheel or its name2nats.pkl (default: pip "
                   "download name2nat==0.5.1).")
@click.option("--dest", default=None, type=click.Path(),
              show_default="data/names for names, data/wikipedia.csv for wikipedia, data/wikipedia_people.csv "
                           "for wikipedia --full-names")
@click.option("--no-verify", is_flag=True,
              help="No SHA-256 checks: accept files other than the 18 official ones, or another name2nat edition.")
@click.option("--force", is_flag=True,
              help="Overwrite existing files at --dest (names: <Language>.txt files that differ from the official "
                   "ones, or any .txt there with --no-verify; wikipedia: the CSV file).")
@click.option("--full-names", is_flag=True,
              help="wikipedia only: one row per person (name,given,surname,language,nationality) instead of "
                   "surname counts (docs/corpora.md#the-wikipedia-people-full-names).")
def data_fetch(corpus: str, source: str | None, dest: str | None, no_verify: bool, force: bool,
               full_names: bool) -> None:
    """Download (or copy) a corpus, verify its SHA-256 sums, write it atomically.

    \b
    CORPUS is one of
      names      the PyTorch tutorial's 18-language surname set: <Language>.txt files in a folder
      wikipedia  ~1M Wikipedia people from the name2nat wheel, cut to surnames and mapped to origin
                 labels (namesclf/data/nationalities.csv), one CSV; surnames of the reserved slice are
                 left out (docs/corpora.md); with --full-names one row per person: the full name, its
                 given names and surname, the origin label and name2nat's nationality
    """
    from namesclf.files import check_output

    if full_names and corpus != "wikipedia":
        raise NamesError("--full-names goes with the wikipedia corpus: names data fetch wikipedia --full-names")
    if full_names:
        from namesclf.data.wikipedia_people import PEOPLE_DEST, fetch_wikipedia_people

        target = dest or PEOPLE_DEST
        check_output(target, force, option="--dest")
        people, where = fetch_wikipedia_people(source, target, verify=not no_verify)
        note = "verified " if where.verified else "read (not verified) "
        click.echo(f"{note}{where.origin} ({where.size:,} bytes, sha256 {where.sha256[:12]}...) and wrote "
                   f"{len(people.rows):,} people ({people.with_language:,} with an origin label) of "
                   f"{people.pairs:,} (name, nationality) pairs to {target}")
        click.echo(f"held out {people.reserved_surnames:,} reserved surnames ({people.reserved_people:,} people); "
                   f"dropped: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(people.dropped.items())
                                             if reason != "reserved surname"))
        return
    if corpus == "wikipedia":
        from namesclf.data.wikipedia import DEFAULT_DEST, fetch_wikipedia

        check_output(dest or DEFAULT_DEST, force, option="--dest")
        built, where = fetch_wikipedia(source, dest or DEFAULT_DEST, verify=not no_verify)
        note = "verified " if where.verified else "read (not verified) "
        click.echo(f"{note}{where.origin} ({where.size:,} bytes, sha256 {where.sha256[:12]}...) and wrote "
                   f"{len(built.rows):,} (surname, language) pairs in {len(built.per_label)} languages from "
                   f"{built.kept_people:,} of {built.people:,} people to {dest or DEFAULT_DEST}")
        click.echo(f"held out {built.reserved_surnames:,} reserved surnames ({built.reserved_people:,} people); "
                   f"dropped: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(built.dropped.items())))
        return
    from namesclf.data.fetch import fetch

    dest = dest or "data/names"
    check_output(dest, kind="folder", option="--dest")
    _refuse_replacing_names(Path(dest), force, verify=not no_verify)
    written = fetch(source, dest, check=not no_verify)
    note = "verified and " if not no_verify else ""
    click.echo(f"{note}wrote {len(written)} files to {dest}")


def _refuse_replacing_names(dest: Path, force: bool, verify: bool) -> None:
    """What a names fetch would overwrite in ``dest``, checked before anything is read: an official
    file already there with the official bytes loses nothing; any other file is kept unless
    ``force``. Without ``verify`` the names are not known in advance, so any .txt file counts."""
    import hashlib

    from namesclf.data.fetch import expected_sums
    from namesclf.files import check_output

    if not dest.is_dir():
        return
    sums = expected_sums()
    names = sorted(sums) if verify else sorted(p.name for p in dest.glob("*.txt"))
    for name in names:
        target = dest / name
        check_output(target, force=True, option="--dest")  # a link, folder or FIFO there: never replaced
        if force or not target.exists():
            continue
        if verify and hashlib.sha256(target.read_bytes()).hexdigest() == sums[name]:
            continue
        raise NamesError(f"--dest {dest}: {name} is there and is not the official file: pass --force to overwrite "
                         "it, or choose another --dest")


# ----------------------------------------------------------------------------- train

