"""Nothing the user has is lost, and every failure is one line.

Every writer (``names predict --output``, the Dask dataset writer, ``names train --out``, ``names
lm train --out``, ``names export --out``, ``names evaluate --out``, ``names data fetch --dest``)
refuses to replace a folder, a symbolic link, a device or a FIFO, and a regular file without
``--force``; the path is checked before any work. The data-loss cases run as real processes, as a
user would meet them; so do the signals, the full disk and the file-size limit.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from namesclf.cli.console import NamesGroup
from namesclf.cli.main import cli
from namesclf.errors import NamesError
from namesclf.files import atomic_open, atomic_write_text, check_output
from namesclf.models.checkpoint import classifier_payload, save_checkpoint
from namesclf.models.networks import build_classifier

from .conftest import REPO, TINY, network_config, write_names_dir

PRECIOUS = "my thesis, chapter 1\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained classifier of TINY's languages: the answers do not matter here, only what is written.
    Its ONNX export lies beside it, so the commands run here start as a user's do, without torch."""
    from namesclf.models.export import export_model_file

    torch.manual_seed(0)
    config = network_config(hidden=8)
    path = tmp_path_factory.mktemp("outputs") / "m.pt"
    save_checkpoint(path, classifier_payload(build_classifier(config, len(TINY)), config, sorted(TINY),
                                             {"split_seed": 0}))
    export_model_file(path)
    return path


@pytest.fixture
def people(tmp_path: Path) -> Path:
    src = tmp_path / "in.csv"
    pd.DataFrame({"name": ["Ivanov", "Rossi", "Tanaka", "Ivanov"]}).to_csv(src, index=False)
    return src


def names(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``names ARGS`` in a real process."""
    return subprocess.run([sys.executable, "-m", "namesclf", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, **kwargs)


def assert_one_line(proc: subprocess.CompletedProcess, message: str) -> None:
    """Exit 1, exactly one line on stderr, ``Error: ...`` holding ``message``; nothing on stdout."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], proc.stderr
    assert proc.stdout == ""


def assert_cli_one_line(result, message: str) -> None:
    """The same for click's test runner: one line on stderr (stdout may hold what came before)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text(PRECIOUS)
    return path


def assert_untouched(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]
    assert (folder / "thesis.tex").read_text() == PRECIOUS


def no_temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- names predict --output


@pytest.mark.parametrize("suffix", ["/", ""])
def test_a_folder_is_never_replaced_by_a_dask_dataset(model: Path, people: Path, tmp_path: Path,
                                                      suffix: str) -> None:
    """The reported data loss: ``--output out/keep/`` (or ``out/keep``, no suffix) with a scheduler
    deleted the user's folder. Even with --force, the folder and its file stay."""
    keep = user_folder(tmp_path / "out" / "keep")
    for force in ((), ("--force",)):
        proc = names("predict", "--model", str(model), "--input", str(people), "--column", "name",
                     "--output", f"{keep}{suffix}", "--scheduler", "local:1", *force)
        assert_one_line(proc, "already exists (a folder)")
        assert_untouched(keep)
    assert no_temporaries(keep.parent) == []


def test_a_folder_a_fifo_a_link_and_a_device_are_never_replaced(model: Path, people: Path, tmp_path: Path) -> None:
    keep = user_folder(tmp_path / "keep")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    target = tmp_path / "target.csv"
    target.write_text(PRECIOUS)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    cases = [(keep, "is a folder"), (fifo, "is a FIFO"), (link, "is a symbolic link")]
    if stat.S_ISCHR(os.stat(os.devnull).st_mode):
        cases.append((Path(os.devnull), "is a character device"))
    common = ["predict", "--model", str(model), "--input", str(people), "--column", "name", "--force"]
    for path, message in cases:
        assert_one_line(names(*common, "--output", str(path)), message)
    assert_untouched(keep)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert link.is_symlink() and target.read_text() == PRECIOUS
    if stat.S_ISCHR(os.stat(os.devnull).st_mode):
        assert_one_line(names(*common, "--output", os.devnull, "--scheduler", "local:1"), "a character device")
        assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert no_temporaries(tmp_path) == []


def test_the_output_path_is_checked_before_any_work(people: Path, tmp_path: Path) -> None:
    """A parent that is a file, an unknown format, a folder name: refused before the model is even
    loaded (the model file named here does not exist, and the error is still about --output)."""
    afile = tmp_path / "afile"
    afile.write_text(PRECIOUS)
    missing_model = tmp_path / "no-such-model.pt"
    common = ["predict", "--model", str(missing_model), "--input", str(people), "--column", "name"]
    for output, scheduler, message in [
        (f"{afile}/out.csv", (), f"{afile} is not a folder"),
        (f"{afile}/deeper/out.csv", (), f"{afile} is not a folder"),
        (f"{afile}/dataset/", ("--scheduler", "local:1"), f"{afile} is not a folder"),
        (str(tmp_path / "out.xlsx"), (), "unknown format .xlsx"),
        (str(tmp_path / "noformat"), (), "unknown format (no suffix)"),
        (str(tmp_path / "newdir") + "/", (), "names a folder"),
    ]:
        assert_one_line(names(*common, "--output", output, *scheduler), message)
    assert afile.read_text() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.csv"]


def test_a_file_is_replaced_only_with_force(model: Path, people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text(PRECIOUS)
    common = ["predict", "--model", str(model), "--input", str(people), "--column", "name", "--output", str(out)]
    assert_one_line(names(*common), "exists: pass --force")
    assert out.read_text() == PRECIOUS
    proc = names(*common, "--force")
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(out)["name"]) == ["Ivanov", "Rossi", "Tanaka", "Ivanov"]
    assert no_temporaries(tmp_path) == []


def test_a_dask_dataset_goes_into_a_new_folder_renamed_into_place(model: Path, people: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="dask is the optional extra namesclf[scale]")
    out = tmp_path / "results"  # no suffix: a folder of Parquet files
    proc = names("predict", "--model", str(model), "--input", str(people), "--column", "name", "--output",
                  str(out), "--scheduler", "local:1")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_parquet(out)["name"].tolist() == ["Ivanov", "Rossi", "Tanaka", "Ivanov"]
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~_umask()  # the usual mode, not the temp folder's 0700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "results"]


def test_write_dataset_refuses_what_is_there_and_removes_only_its_temporary(tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe", reason="dask is the optional extra namesclf[scale]")
    from namesclf.inference.dask_tables import write_dataset

    frame = dd.from_pandas(pd.DataFrame({"name": ["Ivanov", "Rossi", "Tanaka"]}), npartitions=2)
    keep = user_folder(tmp_path / "keep")
    with pytest.raises(NamesError, match="already exists"):
        write_dataset(frame, keep)
    assert_untouched(keep)
    written = write_dataset(frame, tmp_path / "new")
    assert sorted(os.listdir(written)) == ["part.000000.parquet", "part.000001.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "new"]


# ----------------------------------------------------------------------------- the other writers


def test_train_checks_the_model_its_export_and_its_report_before_training(tiny_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", str(tiny_dir), "--epochs", "1", "--hidden", "8", "--quiet"]
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    assert_cli_one_line(runner.invoke(cli, [*base, "--out", str(fifo), "--force"]), "is a FIFO")
    (tmp_path / "m.onnx").write_text(PRECIOUS)  # an export the user keeps, with no model file beside it
    assert_cli_one_line(runner.invoke(cli, [*base, "--out", str(tmp_path / "m.pt")]), "m.onnx exists")
    assert not (tmp_path / "m.pt").exists() and (tmp_path / "m.onnx").read_text() == PRECIOUS
    report = user_folder(tmp_path / "n.report")
    (report / "metrics.json").write_text(PRECIOUS)
    assert_cli_one_line(runner.invoke(cli, [*base, "--out", str(tmp_path / "n.pt"), "--no-export"]),
                        "metrics.json exists")
    assert not (tmp_path / "n.pt").exists() and (report / "metrics.json").read_text() == PRECIOUS
    (tmp_path / "p.report").write_text(PRECIOUS)
    assert_cli_one_line(runner.invoke(cli, [*base, "--out", str(tmp_path / "p.pt"), "--force"]),
                        "is a file, not a folder")
    assert_cli_one_line(runner.invoke(cli, ["lm", "train", str(tiny_dir), "--out", str(fifo), "--force"]),
                        "is a FIFO")


def test_export_and_evaluate_need_force_and_keep_other_files(model: Path, tiny_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    onnx = tmp_path / "m.onnx"
    onnx.write_text(PRECIOUS)
    assert_cli_one_line(runner.invoke(cli, ["export", str(model), "--out", str(onnx)]), "exists: pass --force")
    assert onnx.read_text() == PRECIOUS
    assert_cli_one_line(runner.invoke(cli, ["export", str(model), "--out", str(tmp_path / "m.bin")]),
                        "unknown format .bin")
    result = runner.invoke(cli, ["export", str(model), "--out", str(onnx), "--force"])
    assert result.exit_code == 0, result.output
    assert onnx.read_bytes() != PRECIOUS.encode()

    report = user_folder(tmp_path / "report")
    (report / "metrics.json").write_text(PRECIOUS)
    command = ["evaluate", str(tiny_dir), "--model", str(model), "--out", str(report)]
    assert_cli_one_line(runner.invoke(cli, command), "metrics.json exists: pass --force")
    assert (report / "metrics.json").read_text() == PRECIOUS
    result = runner.invoke(cli, [*command, "--force"])
    assert result.exit_code == 0, result.output
    assert (report / "metrics.json").read_text() != PRECIOUS
    assert (report / "thesis.tex").read_text() == PRECIOUS  # a file the report does not write: left alone
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_cli_one_line(runner.invoke(cli, ["evaluate", str(tiny_dir), "--model", str(model), "--out",
                                            str(fifo), "--force"]), "is a FIFO, not a folder")


def test_data_fetch_keeps_files_it_did_not_write(tiny_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    dest = write_names_dir(tmp_path / "dest", {"Italian": ["Mine"]})
    command = ["data", "fetch", "--from", str(tiny_dir), "--dest", str(dest), "--no-verify"]
    assert_cli_one_line(runner.invoke(cli, command), "Italian.txt is there")
    assert (dest / "Italian.txt").read_text() == "Mine\n" and len(list(dest.iterdir())) == 1
    assert runner.invoke(cli, [*command, "--force"]).exit_code == 0
    assert len((dest / "Italian.txt").read_text().split()) == len(TINY["Italian"])
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "Russian.txt").symlink_to(tmp_path / "elsewhere.txt")
    assert_cli_one_line(runner.invoke(cli, ["data", "fetch", "--from", str(tiny_dir), "--dest", str(linked),
                                            "--no-verify", "--force"]), "is a symbolic link")
    csv = tmp_path / "w.csv"
    csv.write_text(PRECIOUS)
    assert_cli_one_line(runner.invoke(cli, ["data", "fetch", "wikipedia", "--from", str(tiny_dir), "--dest",
                                            str(csv)]), "exists: pass --force")
    assert csv.read_text() == PRECIOUS


def test_atomic_writes_refuse_links_and_with_no_overwrite_a_file_that_appeared(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text(PRECIOUS)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(NamesError, match="is a symbolic link"):
        atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == PRECIOUS
    out = tmp_path / "out.txt"
    with pytest.raises(NamesError, match="appeared while it was being written"), \
            atomic_open(out, overwrite=False) as handle:
        handle.write("new")
        out.write_text(PRECIOUS)  # someone else's file, made while ours was being written
    assert out.read_text() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "out.txt", "target.txt"]
    with pytest.raises(NamesError, match=r"--output .* is a folder"):
        check_output(tmp_path, force=True)


# ----------------------------------------------------------------------------- SIGTERM


SLOW_CSV = """
import sys
import pandas as pd
from namesclf.cli.main import main

real = pd.DataFrame.to_csv

def to_csv_then_wait(self, handle=None, *args, **kwargs):
    result = real(self, handle, *args, **kwargs)
    if handle is not None and handle is not sys.stdout:
        handle.flush()
        print("writing", file=sys.stderr, flush=True)
        sys.stdin.readline()  # the test's SIGTERM comes here, half-way through the final write
    return result

pd.DataFrame.to_csv = to_csv_then_wait
sys.argv = ["names", "predict", *sys.argv[1:]]
main()
"""

SLOW_DATASET = """
import sys
from pathlib import Path
from namesclf.inference.dask_tables import write_dataset

class HalfWritten:
    def to_parquet(self, folder, **kwargs):
        (Path(folder) / "part.000000.parquet").write_bytes(b"PAR1")
        print("writing", file=sys.stderr, flush=True)
        sys.stdin.readline()

write_dataset(HalfWritten(), sys.argv[1])
"""


def terminate_while_writing(argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``argv``, wait for its "writing" line on stderr, send SIGTERM, and collect it."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.strip() == "writing", first + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def test_sigterm_during_the_final_write_keeps_the_old_file_and_leaves_no_temporary(
        model: Path, people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text(PRECIOUS)
    done = terminate_while_writing([sys.executable, "-c", SLOW_CSV, "--model", str(model), "--input", str(people),
                                    "--column", "name", "--output", str(out), "--force", "-q"])
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "Traceback" not in done.stderr
    assert out.read_text() == PRECIOUS
    assert no_temporaries(tmp_path) == []


def test_sigterm_while_a_dataset_is_written_leaves_no_temporary_folder(tmp_path: Path) -> None:
    done = terminate_while_writing([sys.executable, "-c", SLOW_DATASET, str(tmp_path / "dataset")])
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- one line, always


def test_stdout_on_a_full_disk_is_one_line(model: Path, people: Path, tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    lines = tmp_path / "names.txt"
    lines.write_text("Ivanov\nRossi\n")
    for args in (["Ivanov"], ["Ivanov", "--json"], ["--input", str(lines)], ["--input", str(people), "--column",
                                                                             "name"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "namesclf", "predict", "--model", str(model), *args],
                                  stdout=full, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: cannot write"), (args, proc.stderr)
        assert lines[0].endswith(": No space left on device"), (args, proc.stderr)


def test_a_file_size_limit_on_output_is_one_line_and_leaves_no_temporary(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"name": [f"Ivanov{i}" for i in range(5000)]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = names("predict", "--model", str(model), "--input", str(src), "--column", "name", "--output", str(out),
                 "-q", preexec_fn=small_files)
    assert_one_line(proc, f"cannot write {out}: File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_reader_that_stops_reading_is_no_traceback(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "names.txt"
    src.write_text("".join(f"Ivanov{i}\n" for i in range(20000)))
    proc = subprocess.Popen([sys.executable, "-m", "namesclf", "predict", "--model", str(model), "--input", str(src),
                             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"name,language")
    proc.stdout.close()  # as `| head -1` does
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_invalid_utf8_names_the_file_and_the_line(model: Path, tmp_path: Path) -> None:
    """Far from the start, where a text stream's decoder gave an offset inside its last chunk."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"Ivanov\r\n" * 60000 + b"Ro\xffssi\n" + b"Tanaka\n")
    proc = names("predict", "--model", str(model), "--input", str(src), "-q")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: {src}: line 60001: not valid UTF-8 (invalid start byte "
                                                "at byte 3 of the line)"]
    result = CliRunner().invoke(cli, ["predict", "--model", str(model), "--input", "-", "-q"],
                                input=b"Ivanov\n\xe2\x82\n")
    assert_cli_one_line(result, "stdin: line 2: not valid UTF-8")


def test_lines_end_as_in_a_text_file(model: Path, tmp_path: Path) -> None:
    """``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line, as they did when the file was read as text."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"Ivanov\r\nRossi\rTanaka\nSuzuki\r\r\nLast")
    result = CliRunner().invoke(cli, ["predict", "--model", str(model), "--input", str(src), "-q", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert [row.split(",")[0] for row in result.stdout.splitlines()[1:]] == ["Ivanov", "Rossi", "Tanaka", "Suzuki",
                                                                             "", "Last"]


def test_nested_parquet_columns_are_one_line(model: Path, tmp_path: Path) -> None:
    lists, records = tmp_path / "lists.parquet", tmp_path / "records.parquet"
    pd.DataFrame({"name": [["Ivanov", "Rossi"], ["Tanaka"]]}).to_parquet(lists)
    pd.DataFrame({"name": [{"last": "Ivanov"}, {"last": "Rossi"}]}).to_parquet(records)
    for path, kind in ((lists, "list<"), (records, "struct<")):
        for scheduler in ((), ("--scheduler", "local:1")):
            result = CliRunner().invoke(cli, ["predict", "--model", str(model), "--input", str(path), "--column",
                                              "name", *scheduler])
            assert_cli_one_line(result, f"column 'name' holds {kind}")
    from namesclf.inference.tables import predict_frame

    with pytest.raises(NamesError, match="holds lists or records"):
        predict_frame(pd.read_parquet(lists), "name", str(model))


def test_the_cli_boundary_turns_system_and_runtime_errors_into_one_line() -> None:
    ort = pytest.importorskip("onnxruntime.capi.onnxruntime_pybind11_state")

    @click.group(cls=NamesGroup)
    def group() -> None:
        pass

    raised = {
        "disk": OSError(errno.ENOSPC, "No space left on device"),
        "file": FileNotFoundError(errno.ENOENT, "No such file or directory", "gone.csv"),
        "memory": MemoryError(),
        "recursion": RecursionError("maximum recursion depth exceeded"),
        "onnx": ort.Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code\nstack trace follows"),
    }
    for name, exc in raised.items():
        group.command(name)(lambda exc=exc: (_ for _ in ()).throw(exc))
    expected = {"disk": "Error: cannot write the output: No space left on device",
                "file": "Error: gone.csv: No such file or directory",
                "memory": "Error: out of memory",
                "recursion": "Error: the input is nested too deeply to read (maximum recursion depth exceeded)",
                "onnx": "Error: ONNX Runtime cannot run the model: [ONNXRuntimeError] : 1 : FAIL : Non-zero status "
                        "code"}
    for name, line in expected.items():
        result = CliRunner().invoke(group, [name])
        assert result.exit_code == 1 and result.output.strip() == line, result.output
    group.command("interrupt")(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    result = CliRunner().invoke(group, ["interrupt"])  # Ctrl-C: click's own "Aborted!", as before
    assert result.exit_code == 1 and "Aborted!" in result.output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
