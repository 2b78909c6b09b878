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
