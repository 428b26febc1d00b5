"""A table of bad inputs across every command: each ends in one stderr line, exit status 2,
nothing on stdout, no new file, no MLflow run, and Ray not started.

The cases are grouped by the class of mistake (numbers that are not numbers, paths of the
wrong kind, right format but wrong content, dataset content, checks that used to run too late,
unreachable or broken tracking stores), so a new flag is covered by adding a row. They run
in-process through the CLI's ``main(argv)`` (validation only: nothing trains); the few that
need a fresh interpreter (warnings printed once per process) run as subprocesses.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ofa_platform.cli import main

REPO = Path(__file__).resolve().parents[1]
PREDICTOR = REPO.parent / "shared" / "data" / "ofa_mbv3_imagenet" / "acc_predictor.pth"


# --------------------------------------------------------------------------- fixtures
def _png(seed: int) -> bytes:
    import torch
    from torchvision.io import encode_png

    g = torch.Generator().manual_seed(seed)
    return bytes(encode_png(torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8, generator=g))
                 .numpy().tobytes())


def _parquet(directory: Path, labels: list, images: list | None = None, *,
             label_type: str | None = None, classes: str | None = "a,b,c") -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    n = len(labels)
    images = images if images is not None else [_png(i) for i in range(n)]
    label_arr = pa.array(labels, type=getattr(pa, label_type)() if label_type else None)
    table = pa.table({"image": pa.array(images, type=pa.binary()), "label": label_arr})
    if classes is not None:
        table = table.replace_schema_metadata({"classes": classes})
    pq.write_table(table, directory / "train.parquet")
    return f"parquet:{directory}"


@dataclass(frozen=True)
class Inputs:
    root: Path
    file: Path  # an ordinary text file
    binary: Path
    latin1: Path
    nan_arch: Path
    list_ckpt: Path
    tensor_ckpt: Path
    empty_ckpt: Path
    not_a_db: Path
    data: dict[str, str]
    lut_bad_yaml: Path
    lut_binary: Path
    lut_nan: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    import torch

    root = tmp_path_factory.mktemp("bad-inputs")
    file = root / "plain.txt"
    file.write_text("just text\n")
    binary = root / "binary.json"
    binary.write_bytes(b"\x00\x01\x02{\xff\xfe")
    latin1 = root / "latin1.json"
    latin1.write_bytes('{"note": "café"}'.encode("latin-1"))
    nan_arch = root / "nan_arch.json"
    nan_arch.write_text('{"ks": [3, 3], "e": [3, 3], "d": [2], "r": NaN}')
    torch.save([1, 2, 3], root / "list.pth")
    torch.save(torch.ones(3), root / "tensor.pth")
    torch.save({"note": "no tensors"}, root / "empty.pth")
    not_a_db = root / "notadb.sqlite"
    not_a_db.write_text("this is not a database\n")
    pngs = [_png(i) for i in range(6)]
    data = {
        "null_label": _parquet(root / "null_label", [0, 1, None, 2, 0, 1]),
        "string_label": _parquet(root / "string_label", ["a", "b", "c", "a", "b", "c"]),
        "float_label": _parquet(root / "float_label", [0.0, 1.5, 2.0, 0.0, 1.0, 2.0]),
        "negative_label": _parquet(root / "negative_label", [0, 1, -1, 2, 0, 1]),
        "beyond_classes": _parquet(root / "beyond_classes", [0, 1, 2, 3, 0, 1]),
        "huge_label": _parquet(root / "huge_label", [0, 1, 2, 10**9, 0, 1], classes=None),
        "null_image": _parquet(root / "null_image", [0, 1, 2, 0, 1, 2],
                               [pngs[0], None, *pngs[2:]]),
        "bad_image": _parquet(root / "bad_image", [0, 1, 2, 0, 1, 2],
                              [pngs[0], b"not an image", *pngs[2:]]),
        "missing": f"parquet:{root / 'no-such-dir'}",
    }
    lut_bad_yaml = root / "lut_bad_yaml"
    lut_bad_yaml.mkdir()
    (lut_bad_yaml / "160_lookup_table.yaml").write_text("key: [unclosed\n  - : :\n")
    lut_binary = root / "lut_binary"
    lut_binary.mkdir()
    (lut_binary / "160_lookup_table.yaml").write_bytes(b"\xff\xfe\x00\x00garbage")
    lut_nan = root / "lut_nan"
    lut_nan.mkdir()
    (lut_nan / "160_lookup_table.yaml").write_text("layer: {mean: .nan}\n")
    return Inputs(root, file, binary, latin1, nan_arch, root / "list.pth", root / "tensor.pth",
                  root / "empty.pth", not_a_db, data, lut_bad_yaml, lut_binary, lut_nan)


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with its own (not yet created) MLflow store."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return work


# --------------------------------------------------------------------------- the table
# (id, argv builder, a fragment the one error line must contain, extra environment)
TRAIN = ["train", "--schedule", "ofa", "--data", "synthetic:64"]
SEARCH = ["search", "--space", "ofa_mbv3", "--predictor", str(PREDICTOR), "--latency", "macs",
          "--targets", "300"]
EXTRACT = ["extract", "--checkpoint", "x.pth", "--space", "ofa_mbv3", "--out", "sub.pt2"]
GOOD_ARCH = '{"ks": [[3]]}'  # valid JSON; the checkpoint fails first in these rows


def _cases(i: Inputs) -> list[tuple[str, list[str], str, dict[str, str]]]:
    f, d = str(i.file), i.data
    under_file = str(i.file / "sub")
    no_gpu = {}
    rows: list[tuple[str, list[str], str, dict[str, str]]] = [
        # ---- numbers that are not numbers
        ("train-workers-0", [*TRAIN, "--workers", "0"], "--workers", no_gpu),
        ("train-workers-neg", [*TRAIN, "--workers", "-1"], "--workers", no_gpu),
        ("train-workers-text", [*TRAIN, "--workers", "two"], "--workers", no_gpu),
        ("train-gpus-neg", [*TRAIN, "--gpus-per-worker", "-1"], "--gpus-per-worker", no_gpu),
        ("train-gpus-nan", [*TRAIN, "--gpus-per-worker", "nan"], "--gpus-per-worker", no_gpu),
        ("train-cpus-0", [*TRAIN, "--cpus-per-worker", "0"], "--cpus-per-worker", no_gpu),
        ("train-epoch-scale-0", [*TRAIN, "--epoch-scale", "0"], "--epoch-scale", no_gpu),
        ("train-epoch-scale-inf", [*TRAIN, "--epoch-scale", "inf"], "--epoch-scale", no_gpu),
        ("train-epoch-scale-nan", [*TRAIN, "--epoch-scale", "nan"], "--epoch-scale", no_gpu),
        ("train-subset-0", [*TRAIN, "--subset", "0"], "--subset", no_gpu),
        ("train-seed-neg", [*TRAIN, "--seed", "-1"], "--seed", no_gpu),
        ("train-seed-huge", [*TRAIN, "--seed", str(2**40)], "--seed", no_gpu),
        ("train-batch-0", [*TRAIN, "--batch-size", "0"], "--batch-size", no_gpu),
        ("train-width-0", [*TRAIN, "--width-mult", "0"], "--width-mult", no_gpu),
        ("train-width-neg", [*TRAIN, "--width-mult", "-1"], "--width-mult", no_gpu),
        ("train-width-overflow", [*TRAIN, "--width-mult", "1e999"], "--width-mult", no_gpu),
        ("train-max-failures-neg", [*TRAIN, "--max-failures", "-1"], "--max-failures", no_gpu),
        ("train-val-limit-neg", [*TRAIN, "--val-limit", "-5"], "--val-limit", no_gpu),
        ("train-val-limit-0", [*TRAIN, "--val-limit", "0"], "--val-limit", no_gpu),
        ("train-loader-neg", [*TRAIN, "--loader-workers", "-1"], "--loader-workers", no_gpu),
        ("train-experiment-empty", [*TRAIN, "--experiment", ""], "--experiment", no_gpu),
        ("train-experiment-blank", [*TRAIN, "--experiment", "  "], "--experiment", no_gpu),
        ("search-width-0", [*SEARCH, "--width-mult", "0"], "--width-mult", no_gpu),
        ("search-workers-0", [*SEARCH, "--workers", "0"], "--workers", no_gpu),
        ("search-generations-0", [*SEARCH, "--generations", "0"], "--generations", no_gpu),
        ("search-population-neg", [*SEARCH, "--population-size", "-3"], "--population-size",
         no_gpu),
        ("search-targets-nan", [*SEARCH[:-1], "nan"], "targets", no_gpu),
        ("search-targets-inf", [*SEARCH[:-1], "inf"], "targets", no_gpu),
        ("search-targets-empty", [*SEARCH[:-1], ""], "targets", no_gpu),
        ("search-calib-0", [*SEARCH, "--calib-images", "0"], "--calib-images", no_gpu),
        ("search-seed-neg", [*SEARCH, "--seed", "-5"], "--seed", no_gpu),
        ("search-experiment-empty", [*SEARCH, "--experiment", ""], "--experiment", no_gpu),
        ("extract-width-0", [*EXTRACT, "--arch", GOOD_ARCH, "--width-mult", "0"],
         "--width-mult", no_gpu),
        ("extract-classes-0", [*EXTRACT, "--arch", GOOD_ARCH, "--n-classes", "0"],
         "--n-classes", no_gpu),
        ("extract-arch-nan", [*EXTRACT, "--arch", '{"ks": [3], "r": NaN}'], "NaN", no_gpu),
        ("extract-arch-infinity", [*EXTRACT, "--arch", '{"r": Infinity}'], "Infinity",
         no_gpu),
        ("extract-arch-overflow", [*EXTRACT, "--arch", '{"r": 1e999}'], "overflows", no_gpu),
        ("extract-arch-file-nan", [*EXTRACT, "--arch", str(i.nan_arch)], "NaN", no_gpu),
        ("cost-hours-neg", ["cost", "--device-hours", "-1"], "--device-hours", no_gpu),
        ("cost-hours-nan", ["cost", "--device-hours", "nan"], "--device-hours", no_gpu),
        ("cost-price-neg", ["cost", "--device-hours", "1", "--price", "-2"], "--price", no_gpu),
        ("cost-pue-0", ["cost", "--device-hours", "1", "--pue", "0"], "--pue", no_gpu),
        ("compare-experiment-empty", ["compare", "--experiment", ""], "--experiment", no_gpu),
        ("quickstart-workers-0", ["quickstart", "--workers", "0"], "--workers", no_gpu),
        ("quickstart-experiment-empty", ["quickstart", "--experiment", ""], "--experiment",
         no_gpu),
        # ---- paths of the wrong kind
        ("train-storage-is-file", [*TRAIN, "--storage-path", f], "is a file", no_gpu),
        ("train-storage-under-file", [*TRAIN, "--storage-path", under_file], "is a file",
         no_gpu),
        ("search-export-is-file", [*SEARCH, "--export", f], "--export", no_gpu),
        ("search-export-under-file", [*SEARCH, "--export", under_file], "--export", no_gpu),
        ("search-out-is-file", [*SEARCH, "--out", f], "--out", no_gpu),
        ("search-out-under-file", [*SEARCH, "--out", under_file], "--out", no_gpu),
        ("search-cache-is-file", [*SEARCH, "--cache-dir", f], "--cache-dir", no_gpu),
        ("extract-out-is-dir", [*EXTRACT[:-1], str(i.root), "--arch", GOOD_ARCH],
         "is a directory", no_gpu),
        ("extract-out-under-file", [*EXTRACT[:-1], f"{under_file}.pt2", "--arch", GOOD_ARCH],
         "is a file", no_gpu),
        ("extract-arch-binary", [*EXTRACT, "--arch", str(i.binary)], "binary", no_gpu),
        ("extract-arch-latin1", [*EXTRACT, "--arch", str(i.latin1)], "UTF-8", no_gpu),
        ("extract-arch-dir", [*EXTRACT, "--arch", str(i.root)], "directory", no_gpu),
        ("compare-out-is-dir", ["compare", "--experiment", "x", "--out", str(i.root)],
         "is a directory", no_gpu),
        ("compare-out-under-file", ["compare", "--experiment", "x", "--out",
                                    f"{under_file}.html"], "is a file", no_gpu),
        ("quickstart-out-dir-is-file", ["quickstart", "--out-dir", f], "--out-dir", no_gpu),
        ("schedules-binary", ["schedules", str(i.binary)], "", no_gpu),
        ("cost-table-binary", ["cost", "--device-hours", "1", "--table", str(i.binary)], "",
         no_gpu),
        # ---- right format, wrong content
        ("extract-ckpt-list", [*EXTRACT[:2], str(i.list_ckpt), *EXTRACT[3:], "--arch",
                               GOOD_ARCH], "holds a list", no_gpu),
        ("extract-ckpt-tensor", [*EXTRACT[:2], str(i.tensor_ckpt), *EXTRACT[3:], "--arch",
                                 GOOD_ARCH], "holds a Tensor", no_gpu),
        ("extract-ckpt-no-tensors", [*EXTRACT[:2], str(i.empty_ckpt), *EXTRACT[3:], "--arch",
                                     GOOD_ARCH], "no tensors", no_gpu),
        ("extract-ckpt-text", [*EXTRACT[:2], f, *EXTRACT[3:], "--arch", GOOD_ARCH],
         "checkpoint", no_gpu),
        ("train-init-ckpt-list", [*TRAIN, "--init-checkpoint", str(i.list_ckpt)], "checkpoint",
         no_gpu),
        ("train-init-ckpt-tensor", [*TRAIN, "--init-checkpoint", str(i.tensor_ckpt)],
         "checkpoint", no_gpu),
        ("search-predictor-list", [*SEARCH[:4], "--predictor", str(i.list_ckpt), *SEARCH[5:]],
         "predictor", no_gpu),
        ("search-predictor-text", [*SEARCH[:4], "--predictor", f, *SEARCH[5:]], "predictor",
         no_gpu),
        ("search-ckpt-list", [*SEARCH[:3], "--checkpoint", str(i.list_ckpt), *SEARCH[5:],
                              "--data", "synthetic:64"], "checkpoint", no_gpu),
        ("search-ckpt-tensor", [*SEARCH[:3], "--checkpoint", str(i.tensor_ckpt), *SEARCH[5:],
                                "--data", "synthetic:64"], "checkpoint", no_gpu),
        ("search-lut-bad-yaml", [*SEARCH[:6], f"lut:{i.lut_bad_yaml}", *SEARCH[7:],
                                 "--resolutions", "160"], "not valid YAML", no_gpu),
        ("search-lut-binary", [*SEARCH[:6], f"lut:{i.lut_binary}", *SEARCH[7:],
                               "--resolutions", "160"], "latency table", no_gpu),
        ("search-lut-nan", [*SEARCH[:6], f"lut:{i.lut_nan}", *SEARCH[7:],
                            "--resolutions", "160"], "finite", no_gpu),
        ("train-sqlite-not-db", TRAIN, "not a SQLite database",
         {"MLFLOW_TRACKING_URI": f"sqlite:///{i.not_a_db}"}),
        ("train-sqlite-dir", TRAIN, "is a directory",
         {"MLFLOW_TRACKING_URI": f"sqlite:///{i.root}"}),
        ("search-sqlite-not-db", SEARCH, "not a SQLite database",
         {"MLFLOW_TRACKING_URI": f"sqlite:///{i.not_a_db}"}),
        ("compare-sqlite-not-db", ["compare", "--experiment", "x", "--tracking-uri",
                                   f"sqlite:///{i.not_a_db}"], "not a SQLite database", no_gpu),
        # ---- dataset content, before Ray starts
        ("data-null-label", [*TRAIN[:3], "--data", d["null_label"]], "null at row 2", no_gpu),
        ("data-string-label", [*TRAIN[:3], "--data", d["string_label"]], "column 'label'",
         no_gpu),
        ("data-float-label", [*TRAIN[:3], "--data", d["float_label"]], "float", no_gpu),
        ("data-negative-label", [*TRAIN[:3], "--data", d["negative_label"]], "at row 2",
         no_gpu),
        ("data-beyond-classes", [*TRAIN[:3], "--data", d["beyond_classes"]], "at row 3",
         no_gpu),
        ("data-huge-label", [*TRAIN[:3], "--data", d["huge_label"]], "at row 3", no_gpu),
        ("data-null-image", [*TRAIN[:3], "--data", d["null_image"]], "'image' is null at row 1",
         no_gpu),
        ("data-bad-image", [*TRAIN[:3], "--data", d["bad_image"]], "row 1", no_gpu),
        ("data-missing", [*TRAIN[:3], "--data", d["missing"]], "does not exist", no_gpu),
        ("data-unknown-kind", [*TRAIN[:3], "--data", "nope:xx"], "data", no_gpu),
        # ---- checks that used to run too late (after Ray started or methods trained)
        ("train-workers-beyond-cpus", [*TRAIN, "--workers", "4096"], "CPUs", no_gpu),
        ("search-workers-beyond-cpus", [*SEARCH, "--workers", "4096"], "CPUs", no_gpu),
        ("quickstart-workers-beyond-cpus", ["quickstart", "--workers", "4096"], "CPUs", no_gpu),
        ("quickstart-unknown-method", ["quickstart", "--methods", "ofa,nope"], "nope", no_gpu),
        ("quickstart-no-method", ["quickstart", "--methods", ","], "--methods", no_gpu),
        ("quickstart-method-twice", ["quickstart", "--methods", "ofa,ofa"], "twice", no_gpu),
        # ---- unreachable tracking server: seconds, one line naming the URI
        ("compare-unreachable", ["compare", "--experiment", "x", "--tracking-uri",
                                 "http://127.0.0.1:9"], "http://127.0.0.1:9", no_gpu),
        ("train-unreachable", TRAIN, "http://127.0.0.1:9",
         {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
        ("quickstart-unreachable", ["quickstart"], "http://127.0.0.1:9",
         {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
        # ---- names
        ("train-unknown-schedule", ["train", "--schedule", "nope", "--data", "synthetic:64"],
         "nope", no_gpu),
        ("schedules-unknown", ["schedules", "nope"], "nope", no_gpu),
        ("spaces-unknown", ["spaces", "nope"], "nope", no_gpu),
        ("cost-unknown-hardware", ["cost", "--device-hours", "1", "--hardware", "nope"], "nope",
         no_gpu),
        ("submit-unknown-job", ["submit", "nope"], "nope", no_gpu),
        ("jobs-logs-no-id", ["jobs", "logs"], "job id", no_gpu),
        ("study-unknown", ["study", "run", "nope"], "unknown study 'nope'", no_gpu),
        ("study-unknown-scale", ["study", "status", "cifar10", "--scale", "huge"], "huge",
         no_gpu),
        ("study-out-is-file", ["study", "run", "cifar10", "--out", f], "is a file", no_gpu),
        ("study-report-sqlite-not-db", ["study", "report", "cifar10", "--tracking-uri",
                                        f"sqlite:///{i.not_a_db}"], "not a SQLite database",
         no_gpu),
        ("study-bad-action", ["study", "go", "cifar10"], "invalid choice", no_gpu),
        ("train-resume-unknown-run", [*TRAIN, "--resume", "0" * 32], "no such run", no_gpu),
    ]
    import torch

    if not torch.cuda.is_available():
        rows += [
            ("train-gpus-none-here", [*TRAIN, "--gpus-per-worker", "1"], "GPUs", no_gpu),
            ("search-gpus-none-here", [*SEARCH, "--gpus-per-worker", "1"], "GPUs", no_gpu),
        ]
    return rows


def _case_ids() -> list[str]:
    fake = Inputs(Path("r"), Path("f"), Path("b"), Path("l"), Path("n"), Path("c"), Path("t"),
                  Path("e"), Path("d"), {k: "" for k in (
                      "null_label", "string_label", "float_label", "negative_label",
                      "beyond_classes", "huge_label", "null_image", "bad_image", "missing")},
                  Path("y"), Path("z"), Path("q"))
    return [c[0] for c in _cases(fake)]


CASE_IDS = _case_ids()


def test_the_table_is_big_enough() -> None:
    assert len(CASE_IDS) >= 60 and len(set(CASE_IDS)) == len(CASE_IDS)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
        case_id: str, inputs: Inputs, workdir: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, argv, fragment, env = next(c for c in _cases(inputs) if c[0] == case_id)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = _tree(inputs.root)
    ray = sys.modules.get("ray")
    ray_before = ray is not None and ray.is_initialized()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ofa-platform"), err
    assert fragment in lines[0], (fragment, err)
    assert out == ""
    assert _tree(workdir) == set(), _tree(workdir)  # no store, no output, no cache
    assert _tree(inputs.root) == before
    ray = sys.modules.get("ray")
    assert ray_before or ray is None or not ray.is_initialized(), "Ray was started"


# --------------------------------------------------------------------------- subprocesses
def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(REPO), **env)
    full.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "ofa_platform", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)


def test_no_warning_before_the_error_line(tmp_path: Path) -> None:
    """torch's weights-only unpickler warns about a foreign pickle protocol before failing;
    the user gets only the error line (warnings print once per process: a subprocess)."""
    bad = tmp_path / "pickled.pth"
    bad.write_bytes(pickle.dumps([1, 2], protocol=4))
    work = tmp_path / "work"
    work.mkdir()
    res = _cli(["extract", "--checkpoint", str(bad), "--space", "ofa_mbv3", "--arch",
                GOOD_ARCH, "--out", "sub.pt2"], work,
               MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "pickled.pth" in res.stderr
    assert list(work.iterdir()) == []


def test_a_predictor_search_error_does_not_import_torch(tmp_path: Path,
                                                       shared_data: Path) -> None:
    """A search with the published predictor needs no torch, and neither does saying what is
    wrong with it: printing the error once imported torch (2-3 s) to know its error types."""
    code = ("import sys\n"
            "from ofa_platform.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print(rc, 'torch' in sys.modules)\n")
    predictor = shared_data / "ofa_mbv3_imagenet" / "acc_predictor.pth"
    full = dict(os.environ, PYTHONPATH=str(REPO))
    full.pop("RAY_ADDRESS", None)
    res = subprocess.run([sys.executable, "-c", code, "search", "--space", "ofa_mbv3",
                          "--predictor", str(predictor), "--latency",
                          f"lut:{tmp_path / 'no-tables'}", "--targets", "20", "--no-mlflow"],
                         cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300)
    assert res.stdout.split() == ["2", "False"], (res.stdout, res.stderr)
    assert "no-tables" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_search_export_to_a_file_writes_nothing(tmp_path: Path) -> None:
    """Outputs appear all or none: --export naming a file used to fail after pareto.parquet
    and population.parquet were written."""
    if not PREDICTOR.is_file():
        pytest.skip("OFA predictor not in ../shared/data")
    target = tmp_path / "export-here"
    target.write_text("a file\n")
    out = tmp_path / "out"
    res = _cli(["search", "--space", "ofa_mbv3", "--predictor", str(PREDICTOR), "--latency",
                "macs", "--targets", "300", "--generations", "2", "--population-size", "8",
                "--export", str(target), "--out", str(out), "--no-mlflow"], tmp_path)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert target.read_text() == "a file\n"


# --------------------------------------------------------------------------- smaller items
def test_outputs_get_the_umask_mode(tmp_path: Path) -> None:
    from ofa_platform.files import atomic_path

    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


def test_sqlite_artifacts_live_beside_the_database(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from ofa_platform.tracking import artifact_root, ensure_experiment, tracked_run

    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    assert artifact_root(uri) == (tmp_path / "store" / "mlartifacts").as_uri()
    assert artifact_root("http://host:5000") is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's default would put ./mlruns here
    with tracked_run("arts", "r", tags={"ofa.kind": "test"}, tracking_uri=uri) as run:
        import mlflow

        mlflow.log_text("hello", "note.txt")
    exp_id = ensure_experiment("arts", uri)
    assert MlflowClient(uri).get_experiment(exp_id).artifact_location.startswith(
        (tmp_path / "store" / "mlartifacts").as_uri())
    assert (tmp_path / "store" / "mlartifacts").is_dir()
    assert list(elsewhere.iterdir()) == []
    assert MlflowClient(uri).get_run(run.info.run_id).info.status == "FINISHED"


def test_report_draws_dollar_signs_literally(tmp_path: Path) -> None:
    """A method or tag with ``$...$`` used to be parsed as mathtext and crash the report."""
    from mlflow.tracking import MlflowClient

    from dashboards.report import write_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("money", artifact_location=(tmp_path / "a").as_uri())
    for method in ("ofa", r"cheap $\frac{1}{$ run", "$x^2$"):
        run = client.create_run(exp, tags={"ofa.kind": "train", "ofa.method": method})
        client.log_metric(run.info.run_id, "device_hours", 1.0)
        client.log_metric(run.info.run_id, "acc_largest", 0.5)
        client.log_metric(run.info.run_id, "acc_smallest", 0.4)
        client.set_terminated(run.info.run_id, "FINISHED")
    out = write_report("money", tmp_path / "r.html", uri, log_to_mlflow=False)
    assert out.path.is_file() and out.path.read_text().count("<svg") >= 5


def test_job_config_refuses_non_finite_numbers_and_binary_files(tmp_path: Path) -> None:
    """Ray Job YAML configs go through the same classes: ``.nan`` is a float to YAML."""
    from ofa_platform.errors import UserError
    from ofa_platform.jobconfig import load_job_config
    from ofa_platform.train.runner import TrainRequest

    nan = tmp_path / "nan.yaml"
    nan.write_text("schedule: ofa\ndata: synthetic\nwidth_mult: .nan\n")
    with pytest.raises(UserError, match="finite"):
        load_job_config(nan, TrainRequest)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="binary"):
        load_job_config(binary, TrainRequest)
