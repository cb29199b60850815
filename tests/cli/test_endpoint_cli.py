"""``modelport endpoint …``, ``validate`` and ``promote``: the commands, their JSON, their
dry runs, and one clear error line for each mistake (nothing changed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelport.cli.main import main


@pytest.fixture(scope="module")
def iris_bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import modelport

    x, y = load_iris(return_X_y=True, as_frame=True)
    root = tmp_path_factory.mktemp("bundles")
    good = modelport.save(LogisticRegression(max_iter=500).fit(x, y), root / "good",
                          name="iris", example=x.head(10), accelerate=False)
    weak = modelport.save(LogisticRegression(max_iter=500).fit(x.iloc[:, :1].assign(
        **{c: 0.0 for c in x.columns[1:]}), y), root / "weak", name="iris", example=x.head(10),
        accelerate=False)
    holdout = x.assign(species=y)
    holdout.to_parquet(root / "holdout.parquet")
    return Path(good), Path(weak)


@pytest.fixture
def home(modelport_home: Path, iris_bundles: tuple[Path, Path]) -> Path:
    good, weak = iris_bundles
    assert main(["models", "register", str(good)]) == 0  # iris:1
    assert main(["models", "register", str(weak)]) == 0  # iris:2
    assert main(["models", "register", str(good)]) == 0  # iris:3
    assert main(["alias", "set", "iris", "production", "1"]) == 0
    return modelport_home


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_show_switch_rollback_delete(home: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    code, out, _ = run(capsys, "endpoint", "create", "fraud", "--variant",
                       "blue=iris@production", "--variant", "green=iris:3", "--policy",
                       "bluegreen", "--json")
    assert code == 0 and json.loads(out)["state"]["active"] == "blue"
    code, out, _ = run(capsys, "endpoint", "switch", "fraud", "green", "--dry-run")
    assert code == 0 and "dry run, nothing changed" in out
    code, out, _ = run(capsys, "endpoint", "show", "fraud", "--json")
    shown = json.loads(out)
    assert shown["state"]["active"] == "blue" and shown["revision"] == 1
    assert run(capsys, "endpoint", "switch", "fraud", "green")[0] == 0
    code, out, _ = run(capsys, "endpoint", "list")
    assert "fraud" in out and "green 100%" in out
    assert run(capsys, "endpoint", "rollback", "fraud")[0] == 0
    code, out, _ = run(capsys, "endpoint", "show", "fraud")
    assert "active" in out and "endpoint.rollback" in out and "endpoint.switch" in out
    code, out, _ = run(capsys, "endpoint", "show", "fraud", "--json")
    assert json.loads(out)["state"]["active"] == "blue"
    assert run(capsys, "endpoint", "delete", "fraud")[0] == 0
    code, _, err = run(capsys, "endpoint", "show", "fraud")
    assert code == 4 and err.startswith("error: ") and "modelport endpoint create" in err


@pytest.mark.parametrize("args, code, message", [
    (["--variant", "a=iris:1", "--variant", "b=iris:3", "--policy", "split", "--weight", "a=60",
      "--weight", "b=30"], 2, "sum to 90, not 100"),
    (["--variant", "a=iris:1", "--variant", "b=iris:9", "--policy", "bluegreen"], 4,
     "has no version 9"),
    (["--variant", "a=iris:1", "--policy", "canary", "--variant", "b=iris:3",
      "--candidate", "c"], 2, "'c' is not a variant"),
    (["--policy", "split"], 2, "needs at least one --variant"),
    (["--variant", "a=iris:1", "--variant", "b=iris:3", "--policy", "canary", "--candidate",
      "b", "--steps", "50,10"], 2, "rise strictly"),
])
def test_bad_endpoints_get_one_error_line(home: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], code: int, message: str) -> None:
    got, _, err = run(capsys, "endpoint", "create", "e", *args)
    assert got == code and message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert run(capsys, "endpoint", "list", "--json")[1].strip() == "[]"


def test_an_archived_version_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "archive", "iris:2"]) == 0
    code, _, err = run(capsys, "endpoint", "create", "e", "--variant", "a=iris:1",
                       "--variant", "b=iris:2", "--policy", "bluegreen")
    assert code == 5 and "archived version iris:2" in err


def test_set_with_a_stale_revision_is_a_conflict(home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "endpoint", "create", "ab", "--variant", "a=iris:1", "--variant",
               "b=iris:3", "--policy", "split", "--weight", "a=50", "--weight", "b=50")[0] == 0
    assert run(capsys, "endpoint", "set", "ab", "--weight", "a=90", "--weight", "b=10",
               "--if-revision", "1")[0] == 0
    code, _, err = run(capsys, "endpoint", "set", "ab", "--weight", "a=80", "--weight", "b=20",
                       "--if-revision", "1")
    assert code == 5 and "changed by someone else since revision 1" in err
    code, out, _ = run(capsys, "endpoint", "show", "ab", "--json")
    assert json.loads(out)["weights"] == {"a": 90.0, "b": 10.0}


def test_canary_steps_can_be_changed_and_paused(home: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "endpoint", "create", "c", "--variant", "blue=iris@production",
               "--variant", "green=iris:3", "--policy", "canary", "--candidate", "green",
               "--steps", "5,10,25,50,100", "--interval", "2m", "--max-error-rate", "0.01",
               "--max-p99-ms", "50")[0] == 0
    code, out, _ = run(capsys, "endpoint", "set", "c", "--steps", "20,100", "--json")
    data = json.loads(out)
    assert data["canary"]["steps"] == [20.0, 100.0] and data["state"]["weight"] == 20.0
    assert data["canary"]["interval_s"] == 120.0
    assert run(capsys, "endpoint", "pause", "c")[0] == 0
    code, out, _ = run(capsys, "endpoint", "show", "c")
    assert "(paused)" in out
    code, out, _ = run(capsys, "endpoint", "promote", "c")
    assert code == 0
    code, out, _ = run(capsys, "models", "show", "iris@production", "--json")
    assert json.loads(out)["version"] == 3


def test_apply_a_yaml_file(home: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "endpoints.yaml"
    file.write_text("""
endpoints:
  - name: checkout
    policy: split
    key: x-user-id
    variants: {a: "iris@production", b: "iris:3"}
    weights: {a: 90, b: 10}
  - name: ranker
    policy: bandit
    variants: {a: "iris:1", b: "iris:3"}
    bandit: {algorithm: ucb1, floor: 0.1, reward_min: 0, reward_max: 5}
""")
    code, out, _ = run(capsys, "endpoint", "apply", str(file), "--dry-run", "--json")
    assert json.loads(out)["endpoints"] == [{"name": "checkout", "change": "created"},
                                             {"name": "ranker", "change": "created"}]
    assert run(capsys, "endpoint", "list", "--json")[1].strip() == "[]"
    assert run(capsys, "endpoint", "apply", str(file))[0] == 0
    code, out, _ = run(capsys, "endpoint", "apply", str(file), "--json")
    assert {e["change"] for e in json.loads(out)["endpoints"]} == {"unchanged"}
    code, _, err = run(capsys, "endpoint", "reward", "ranker", "a=7")
    assert code == 3 and "outside the endpoint's declared range [0, 5]" in err
    assert run(capsys, "endpoint", "reward", "ranker", "a=4", "b=1")[0] == 0
    code, out, _ = run(capsys, "endpoint", "report", "ranker", "--metric", "reward", "--json")
    report = json.loads(out)
    assert {v["variant"]: v["mean"] for v in report["variants"]} == {"a": 0.8, "b": 0.2}
    file.write_text("name: broken\npolicy: split\nvariants: {a: iris:1}\nweights: {a: 50}\n")
    code, _, err = run(capsys, "endpoint", "apply", str(file))
    assert code == 2 and "endpoint 1" in err and "sum to 50" in err


def test_validate_and_promote_gates(home: Path, iris_bundles: tuple[Path, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    holdout = str(iris_bundles[0].parent / "holdout.parquet")
    code, out, _ = run(capsys, "validate", "iris:3", "--against", "iris@production", "--data",
                       holdout, "--label", "species", "--metric", "accuracy", "--json")
    assert code == 0 and json.loads(out)["passed"] is True
    code, out, _ = run(capsys, "validate", "iris:2", "--against", "iris@production", "--data",
                       holdout, "--label", "species", "--metric", "roc_auc")
    assert code == 1 and out.startswith("FAILED") and "improves by" in out
    code, out, _ = run(capsys, "promote", "iris:2", "--to", "production", "--if-better",
                       "--data", holdout, "--label", "species")
    assert code == 1 and "not promoted" in out
    assert run(capsys, "models", "show", "iris@production", "--json")[1].count('"version": 1')
    code, out, _ = run(capsys, "promote", "iris:3", "--to", "production", "--if-better",
                       "--data", holdout, "--label", "species", "--json")
    assert code == 0 and json.loads(out)["promoted"] is True
    code, _, err = run(capsys, "validate", "iris:3", "--against", "iris:1", "--data", holdout,
                       "--label", "nope")
    assert code == 3 and "no label column 'nope'" in err
    code, _, err = run(capsys, "validate", "iris:3", "--against", "iris:1")
    assert code == 2 and "needs --data FILE and --label COLUMN" in err
