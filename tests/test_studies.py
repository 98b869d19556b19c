"""ftutils.studies: the record committed beside a study's results, written whole or not at all."""

import json
import os
import subprocess

import pytest

from ftutils import studies
from ftutils.errors import ResumeError


def test_record_names_command_parameters_versions_machine_and_weights():
    made = studies.record("python scripts/x.py --seeds 0", {"seeds": [0]}, "random weights")
    assert made["command"] == "python scripts/x.py --seeds 0"
    assert made["parameters"] == {"seeds": [0]}
    assert made["weights"] == "random weights"
    assert {"python", "tensorflow", "keras", "numpy"} == set(made["versions"])
    assert {"replicas", "precision", "deterministic"} == set(made["configuration"])
    assert made["machine"]["cpus"] >= 1 and made["machine"]["note"] == studies.SHARED_CPU
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit the study ran on
        assert made["git_commit"] == head.stdout.strip()


def test_write_json_replaces_the_file_whole(tmp_path, monkeypatch):
    out = tmp_path / "results" / "study.json"
    studies.write_json(out, {"runs": [1], "名字": "猫"})
    assert json.loads(out.read_text()) == {"runs": [1], "名字": "猫"}

    def interrupted(source, target):
        raise KeyboardInterrupt  # the study killed between writing and renaming

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        studies.write_json(out, {"runs": [1, 2]})
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"runs": [1], "名字": "猫"}  # the last whole file
    assert [p.name for p in out.parent.iterdir()] == ["study.json"]  # and no leftover


def test_load_script_gives_the_study_as_a_module():
    scratch_study = studies.load_script("scratch_study")
    assert scratch_study.results_path("vgg16").name == "scratch_study_vgg16.json"
    params = scratch_study.PARAMS["alexnet"]
    assert scratch_study.Study(params).params == json.loads(json.dumps(params))


def test_a_results_file_is_written_per_run_and_resumed_only_for_the_same_study(tmp_path):
    out = tmp_path / "study.json"
    made = studies.record("python scripts/x.py", {"seeds": (0, 1)}, "ImageNet weights")
    first = studies.ResultsFile(out, made)
    first.save({"seed": 0, "accuracy": 0.5})
    assert json.loads(out.read_text())["runs"] == [{"seed": 0, "accuracy": 0.5}]
    again = studies.record("python scripts/x.py", {"seeds": [0, 1]}, "ImageNet weights")
    resumed = studies.ResultsFile(out, again)
    assert resumed.has(seed=0) and not resumed.has(seed=1)
    assert again["started"] == made["started"]  # the study's start, not the resumption's
    other = studies.record("python scripts/x.py", {"seeds": [0, 1]}, "random weights")
    with pytest.raises(ResumeError, match="weights: ImageNet weights -> random weights"):
        studies.ResultsFile(out, other)  # other weights: refused, the file is kept
    assert json.loads(out.read_text())["runs"] == [{"seed": 0, "accuracy": 0.5}]


def test_a_results_file_made_with_other_library_versions_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "study.json"
    made = studies.record("python scripts/x.py", {"seeds": [0, 1]}, "ImageNet weights")
    studies.ResultsFile(out, made).save({"seed": 0, "accuracy": 0.5})
    import keras

    monkeypatch.setattr(keras, "__version__", "9.9.9")
    upgraded = studies.record("python scripts/x.py", {"seeds": [0, 1]}, "ImageNet weights")
    named = r"(?s)versions\.keras: 3.* -> 9\.9\.9\nWrite .* another file, or delete"
    with pytest.raises(ResumeError, match=named):
        studies.ResultsFile(out, upgraded)
    monkeypatch.undo()
    monkeypatch.setattr(studies, "now", lambda: "2000-01-01T00:00:00+00:00")
    moved = studies.record("python x.py --other-flag", {"seeds": [0, 1]}, "ImageNet weights",
                           machine_note="another machine")  # fmt: skip
    assert studies.ResultsFile(out, moved).has(seed=0)  # command, machine, dates: resumed


def test_a_damaged_results_file_is_named_not_a_traceback(tmp_path):
    out = tmp_path / "study.json"
    out.write_text('{"provenance": {"started": "x"}, "runs": [{"seed"')
    made = studies.record("python scripts/x.py", {}, "ImageNet weights")
    with pytest.raises(ResumeError, match="study.json is not a whole results file"):
        studies.ResultsFile(out, made)


def test_summary_says_where_the_results_come_from_and_how_they_were_made():
    made = studies.record("python scripts/x.py", {}, "ImageNet weights")
    text = studies.summary(made, "data/results/x.json")
    assert text.splitlines()[0] == "results:  data/results/x.json"
    assert "(not finished)" in text  # a study still running, or killed
    made["finished"] = studies.now()
    text = studies.summary(made, "data/results/x.json")
    assert f"to {made['finished']} UTC" in text and "weights:  ImageNet weights" in text


def test_shown_command_keeps_file_names_of_absolute_paths():
    command = "python scripts/s.py --merge /tmp/part-a.json /work/x/part-b.json --out data/r.json"
    assert studies.shown_command(command) == (
        "python scripts/s.py --merge part-a.json part-b.json --out data/r.json"
    )
