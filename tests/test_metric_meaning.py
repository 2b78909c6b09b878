"""What a score's numbers mean, its range and whether lower is better, is declared once
in ``metric_names`` beside its name, and the report reads it there."""

from __future__ import annotations

from run_fixtures import write_run

from losscmp import metric_names, stats
from losscmp.metric_names import METRICS, higher_is_better, score_range
from losscmp.summary import load_run, summarize


def test_each_headline_has_its_range_and_direction():
    assert {metric: score_range(metric) for metric in METRICS if score_range(metric) != (0, 1)} == {
        "mcc": (-1.0, 1.0),
        "mcc_t": (-1.0, 1.0),  # MCC at the chosen threshold: MCC's range
    }
    assert [metric for metric in METRICS if not higher_is_better(metric)] == ["ece"]


def test_the_report_clips_and_ranks_as_metric_names_says(tmp_path, monkeypatch):
    """summary.py clipped the intervals to [-1, 1] for 'mcc' and 'mcc_t' by name, and
    selection.py held the lower-is-better scores: a new signed or lower-is-better score took
    an edit in each besides its line in metric_names."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6})
    assert list(summarize(load_run(run_dir), metric="iou")["loss"]) == ["dice", "focal"]
    bounds = []
    compare = stats.compare_losses

    def spy(per_seed, **options):
        bounds.append(options["bounds"])
        return compare(per_seed, **options)

    monkeypatch.setattr(stats, "compare_losses", spy)
    monkeypatch.setitem(metric_names.SCORE_RANGES, "iou", (-1.0, 1.0))
    monkeypatch.setattr(metric_names, "LOWER_IS_BETTER", frozenset({"iou"}))
    ranked = summarize(load_run(run_dir), metric="iou")
    assert bounds == [(-1.0, 1.0)]
    assert list(ranked["loss"]) == ["focal", "dice"]  # the lower IoU first
    assert list(ranked["rank"]) == [1, 2]


def test_each_score_is_its_registration_and_its_formula():
    """A score was a key in metrics.scores' dict, a name in SCORE_NAMES and, for a headline,
    a title in METRIC_TITLES (and its range and direction in two more places): one
    register_score line now, the formula a function of the counts it names."""
    import torch

    from losscmp import metrics

    counts = torch.tensor([[2, 1, 2, 11], [0, 0, 0, 16], [0, 3, 0, 13]])
    shares = (counts.double() / counts.sum(dim=-1, keepdim=True)).unbind(dim=-1)
    computed = metrics.scores(counts)
    assert tuple(computed) == metric_names.SCORE_NAMES
    assert {"dice", "iou", "mcc", "precision", "recall"} <= set(computed)  # more may come
    for name, values in computed.items():
        assert torch.equal(values, metric_names.SCORES[name].load()(*shares)), name
    assert metric_names.SCORES["precision"].headline is False
    assert "precision" not in metric_names.METRIC_TITLES  # recorded, not a headline
    assert metric_names.METRIC_TITLES["mcc_t"] == "MCC@thr."
    assert metric_names.METRIC_TITLES["image_iou"] == "image IoU"


NEW_SCORE = """
from losscmp.scores import ratio


def specificity(tp, fp, fn, tn):
    return ratio(tn, tn + fp, (fn == 0).to(tn.dtype))
"""

# Loads metric_names with one registration line added, then the modules that read it.
WITH_A_NEW_SCORE = """
import json, sys, types
from pathlib import Path

import losscmp

path = Path(losscmp.__file__).parent / "metric_names.py"
derived = "# ---------------------------------------------------------------- derived"
line = 'register_score("specificity", "scratch_score:specificity", "specificity")\\n'
module = types.ModuleType("losscmp.metric_names")
sys.modules[module.__name__] = losscmp.metric_names = module
exec(compile(path.read_text().replace(derived, line + derived), str(path), "exec"), vars(module))

import torch
from losscmp import metrics, report_args, results, selection, summary

counts = torch.tensor([[[2, 1, 2, 11]], [[0, 3, 0, 13]]])
columns = metrics.summarize_epoch(counts, mode="binary", prefix="test_")
print(json.dumps({
    "value": columns["test_specificity"],
    "epochs_csv": [name for name in results.EPOCH_COLUMNS if "specificity" in name],
    "metric": report_args.check_metric("Specificity"),
    "title": summary.METRIC_TITLES["specificity"],
    "plain": "specificity" in summary.PLAIN_METRICS,
    "higher_is_better": selection.higher_is_better("specificity"),
}))
"""


def test_a_new_score_is_one_module_and_one_registration_line(tmp_path):
    """With its formula's module and its line in metric_names, a score is computed, stored in
    epochs.csv, offered to report --metric and titled, with no other edit."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "scratch_score.py").write_text(NEW_SCORE)
    paths = [str(tmp_path), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    done = subprocess.run(
        [sys.executable, "-c", WITH_A_NEW_SCORE],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # tn / (tn + fp) of the summed counts [2, 4, 2, 24]
    assert got == {
        "value": 24 / 28,
        "epochs_csv": ["val_specificity", "test_specificity"],
        "metric": "specificity",
        "title": "specificity",
        "plain": True,
        "higher_is_better": True,
    }
