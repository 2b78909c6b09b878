"""render/html.py: one self-contained page, the same numbers as summary.csv, offline.

The page's contents are checked here from its text; tests/test_html_browser.py
opens it in a real Chromium.
"""

from __future__ import annotations

import html as htmllib
import json
import re

import pandas as pd
import pytest
from run_fixtures import write_run

from losscmp.render import html
from losscmp.results import read_run_json
from losscmp.summary import build_report

QUALITY = {"dice": 0.8, "focal": 0.6, "tversky": 0.75}


def page_of(run_dir, metric: str = "dice") -> str:
    return html.page(build_report([run_dir], metric=metric))


def test_page_fetches_nothing_and_forbids_fetching(tmp_path):
    text = page_of(write_run(tmp_path, quality=QUALITY))
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    sources = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert not re.search(r"https?://|url\(|@import", text)


def test_page_has_the_table_caption_and_figures(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    report = build_report([run_dir])
    text = html.page(report)
    assert html._e(report.caption) in text
    assert text.count('<table class="sortable comparison"') == 1
    assert len(re.findall(r"<tr[^>]*data-loss=", text)) == 3
    # best first without JavaScript: the rows are in rank order
    assert re.findall(r'<tr[^>]*data-loss="([^"]+)"', text) == ["dice", "tversky", "focal"]
    assert text.count("<figure>") == 2  # learning curves, prediction panel


def test_diverged_failed_and_unfinished_trials_are_stated(tmp_path):
    run_dir = write_run(
        tmp_path,
        quality=QUALITY,
        diverged={("focal", 1): 3},
        extra_meta={"failed_trials": {"extra-trial": "worker killed twice"}},
    )
    meta = read_run_json(run_dir)
    meta["trials"] += ["extra-trial", "another-trial"]  # failed; not trained yet
    meta["finished_at"] = None
    (run_dir / "run.json").write_text(json.dumps(meta))
    text = page_of(run_dir)
    assert "What went wrong" in text
    assert (
        "<li>focal on synthetic diverged (non-finite loss; left out of every mean): "
        "seed 1 at epoch 3.</li>"
    ) in text
    assert "1 trial failed (extra-trial: worker killed twice)" in text
    assert "is unfinished: 1 planned trial(s) have no result yet" in text
    assert "has no end time" in text


def test_diverged_trials_of_a_grid_are_one_line_per_loss_that_names_the_rates(tmp_path):
    """A line per trial, without its rate: 345 trials (23 losses x 5 seeds x 3 rates) whose
    8 losses diverged at every rate opened the page on 120 lines, each three times alike."""
    losses = {f"loss{index:02d}": 0.5 + index / 100 for index in range(23)}
    diverged = {(loss, seed): 2 for loss in list(losses)[:8] for seed in range(5)}
    diverged[("loss09", 3)] = 4  # a ninth loss, on one seed, at every rate
    run_dir = write_run(
        tmp_path, quality=losses, seeds=range(5), lrs=[1e-3, 3e-3, 1e-2], diverged=diverged,
        epochs=5, n_images=4, panel=False,
    )  # fmt: skip
    text = page_of(run_dir)
    lines = re.findall(r"<li>(.*?)</li>", text)
    assert len(lines) == 9
    assert lines[0] == (
        "loss00 on synthetic diverged (non-finite loss; left out of every mean): "
        "lr 0.001: all 5 seeds at epoch 2; lr 0.003: all 5 seeds at epoch 2; "
        "lr 0.01: all 5 seeds at epoch 2."
    )
    assert lines[8] == (
        "loss09 on synthetic diverged (non-finite loss; left out of every mean): "
        "lr 0.001: seed 3 at epoch 4; lr 0.003: seed 3 at epoch 4; lr 0.01: seed 3 at epoch 4."
    )
    assert "23 loss(es) × 5 seed(s) × 3 learning rates (345 trials) on synthetic" in text


def test_seeds_that_diverged_at_different_epochs_are_grouped_by_epoch():
    trials = pd.DataFrame(
        {
            "seed": [0, 1, 2, 3],
            "status": ["diverged", "diverged", "finished", "diverged"],
            "diverged_epoch": [2, 4, None, 2],
        }
    )
    assert html._diverged_seeds(trials) == "seeds 0, 3 at epoch 2 and seed 1 at epoch 4"
    assert html._diverged_seeds(trials.assign(status="diverged", diverged_epoch=None)) == (
        "all 4 seeds"
    )
    assert html._diverged_seeds(trials.assign(status="finished")) == ""


def test_a_clean_run_says_so(tmp_path):
    text = page_of(write_run(tmp_path, quality=QUALITY))
    assert "All 9 planned trials finished; none diverged." in text
    assert "What went wrong" not in text


def test_what_was_run(tmp_path):
    run_dir = write_run(
        tmp_path,
        quality=QUALITY,
        extra_meta={
            "command": "losscmp run --config configs/x.yaml",
            "working_dir": "/home/me/losscmp",
            "git_commit": "abc1234",
            "git_dirty": True,
        },
    )
    text = page_of(run_dir)
    for expected in (
        "<code>losscmp run --config configs/x.yaml</code>",
        # the command's configs/x.yaml is relative: it is replayed from there
        "<dt>working folder</dt><dd><code>/home/me/losscmp</code></dd>",
        "<dt>execution</dt>",
        "<dt>versions</dt>",
        "<dt>device</dt><dd>cpu</dd>",
        "<code>abc1234</code> with uncommitted changes to losscmp/",
        "2026-01-01 12:05:00+00:00 (5 min 0 s)",
        "preset=tiny, encoder_name=resnet18",
        "losscmp=0.1.0",
        "<dt>epochs</dt><dd>4</dd>",
        "Dataset synthetic",
    ):
        assert expected in text


def test_multiclass_page_has_scores_per_class(tmp_path):
    run_dir = write_run(tmp_path, class_names=("background", "pet", "border"))
    text = page_of(run_dir)
    section = text[text.index("Scores per class") :]
    assert all(f"{name}</th>" in section for name in ("background", "pet", "border"))
    assert "each class in its colour" in text


def test_imbalance_dial_section_and_figure(tmp_path):
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=datasets, panel=False)
    text = page_of(run_dir)
    assert "Imbalance dial — synthetic" in text
    assert "fg 0.01</th>" in text and "fg 0.2</th>" in text
    assert text.count("<figure>") == 2  # learning curves, dial
    assert "<figcaption>Dice against the foreground fraction, mean ± sd over seeds." in text
    one_seed = write_run(tmp_path / "one", quality=QUALITY, datasets=datasets, seeds=(0,))
    assert "<figcaption>Dice against the foreground fraction, one seed, no bars." in (
        page_of(one_seed)
    )


def test_cli_writes_the_page_atomically_and_names_it(cli, tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    out = tmp_path / "out"
    out.mkdir()
    result = cli("report", run_dir, "--html", out / "page.html")
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'page.html'}" in result.stderr
    assert [path.name for path in out.iterdir()] == ["page.html"]  # no temp file left
    assert (out / "page.html").read_text().startswith("<!DOCTYPE html>")


def test_a_disk_that_fills_up_is_one_line_not_a_traceback(cli, tmp_path, monkeypatch):
    """The write's own error (ENOSPC has no file name) reached the user as a traceback."""
    import errno

    from losscmp import results

    write = results.atomic_write_bytes

    def full(path, data):  # the page's disk only: the run's summary.csv is written
        if path.name == "page.html":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(results, "atomic_write_bytes", full)
    run_dir = write_run(tmp_path, quality=QUALITY)
    result = cli("report", run_dir, "--html", tmp_path / "page.html")
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: cannot write {tmp_path / 'page.html'}: No space left on device\n"
    )
    assert not (tmp_path / "page.html").exists()


def test_html_into_a_folder_is_refused_before_anything_is_written(cli, tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    result = cli("report", run_dir, "--html", tmp_path)
    assert result.exit_code == 2
    assert "--html" in result.stderr and "is a folder; give a file name" in result.stderr
    assert not (run_dir / "summary.csv").exists()


def test_the_run_ends_with_its_report_page(smoke_run):
    result, run_dir = smoke_run
    page = run_dir / "report.html"
    assert f"wrote {page}" in result.stderr
    text = page.read_text()
    meta = read_run_json(run_dir)
    assert meta["command"].startswith("losscmp run --config ")
    assert meta["command"].endswith(f"--out {run_dir.parent}")
    assert html._e(meta["command"]) in text
    assert 20_000 < len(text.encode()) < 400_000


@pytest.mark.parametrize("metric", ["iou", "image_dice"])
def test_headline_metric_names_the_table(tmp_path, metric):
    text = page_of(write_run(tmp_path, quality=QUALITY), metric=metric)
    assert {"iou": "IoU test", "image_dice": "image Dice test"}[metric] in text


def test_combined_runs_give_one_page_with_each_runs_setup(tmp_path):
    first = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, run_id="20260101-1-a")
    second = write_run(tmp_path, quality={"tversky": 0.7}, run_id="20260101-2-b")
    text = html.page(build_report([first, second]))
    assert "runs 20260101-1-a, 20260101-2-b" in text
    assert "<h3>Run 20260101-1-a</h3>" in text and "<h3>Run 20260101-2-b</h3>" in text
    assert re.findall(r'<tr[^>]*data-loss="([^"]+)"', text) == ["dice", "tversky", "focal"]


def test_the_recorded_command_line_replays_the_options_given():
    from pathlib import Path

    from losscmp.cli import _command_line

    flags = {"losses": "dice,focal(gamma=1)", "amp": False, "jobs": 2, "lr": None}
    assert _command_line(Path("configs/x.yaml"), flags, Path("results/r 1")) == (
        "losscmp run --config configs/x.yaml --losses 'dice,focal(gamma=1)' --no-amp "
        "--jobs 2 --resume 'results/r 1'"
    )


def test_a_run_whose_every_trial_diverged_gets_its_page_and_plots(cli, tmp_path):
    """No trial left a prediction: the panel is left out, not drawn with no loss (which
    raised on a run whose reference images are from the validation split)."""
    diverged = {(loss, seed): 1 for loss in QUALITY for seed in (0, 1, 2)}
    run_dir = write_run(tmp_path, quality=QUALITY, diverged=diverged)
    result = cli("report", run_dir, "--html", tmp_path / "page.html", "--plots")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "page.html").read_text()
    assert text.count("<figure>") == 1  # the learning curves alone
    assert "focal on synthetic diverged" in text
    assert sorted(path.name for path in (run_dir / "plots").iterdir()) == ["learning_curves.png"]


@pytest.mark.parametrize(
    ("seeds", "said"),
    [
        ((0,), "Validation Dice per epoch (one seed); a ring marks"),
        ((0, 1, 2), "Validation Dice per epoch: mean over seeds, band ± 1 sd; a ring marks"),
    ],
)
def test_the_learning_curves_caption_says_what_lines_bands_and_rings_are(tmp_path, seeds, said):
    """It promised '± one sd across seeds' of a one-seed run, which has no band, and said
    nothing of the epoch the table reads each trial at."""
    text = page_of(write_run(tmp_path, quality=QUALITY, seeds=seeds))
    (caption,) = [c for c in re.findall(r"<figcaption>([^<]*)", text) if "per epoch" in c]
    assert caption == html._e(
        f"{said} each epoch a seed chose on validation, where the table reads its scores; "
        "the legend in the table's order."
    )


def test_a_stopped_runs_header_says_how_many_of_its_planned_trials_finished(tmp_path):
    """It said '3 loss(es) × 3 seed(s)' of a run stopped with 7 of its 9 trials, as if all
    had finished; and a run stopped after its first seed counted one seed, not three."""
    run_dir = write_run(tmp_path, quality=QUALITY, write_csvs=False)
    meta = read_run_json(run_dir)
    meta["finished_at"] = None
    (run_dir / "run.json").write_text(json.dumps(meta))
    trials = sorted(run_dir.glob("trials/*__seed2__*.json"))
    for path in trials[:2]:
        path.unlink()
    lead = "3 loss(es) × 3 seed(s) on synthetic; 7 of 9 planned trials finished; headline"
    assert lead in page_of(run_dir)
    for path in run_dir.glob("trials/*.json"):
        if "__seed0__" not in path.name:
            path.unlink()
    assert "3 loss(es) × 3 seed(s) on synthetic; 3 of 9 planned trials finished" in (
        page_of(run_dir)
    )


def test_a_finished_runs_header_counts_no_trials_unless_a_grid_of_rates(tmp_path):
    text = page_of(write_run(tmp_path, quality=QUALITY))
    assert "3 loss(es) × 3 seed(s) on synthetic; headline: Dice; run " in text


@pytest.mark.parametrize("metric", ["dice", "ece"])
def test_the_dial_caption_is_the_terminals_and_its_bold_cells_are_the_best(tmp_path, metric):
    """With --metric ece the page's dial said nothing of lower being better, as the
    terminal's caption now does; its 'bold = best' holds: the best cells are td.strong."""
    from losscmp.render.terminal import render_imbalance_table
    from losscmp.summary import imbalance_frame

    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=datasets, panel=False)
    report = build_report([run_dir], metric=metric)
    text = html.page(report)
    caption = render_imbalance_table(report.summary, metric=metric).caption
    assert f'<p class="caption">{html._e(caption)}</p>' in text
    assert ("lower is better" in caption) == (metric == "ece")
    assert "bold = best at that fraction" in caption
    section = text[text.index("Imbalance dial") :]
    section = section[: section.index("</table>")]
    bold = set()
    for loss, cells in re.findall(r'<tr data-loss="([^"]+)">(.*?)</tr>', section):
        for column, cell in enumerate(re.findall(r"<td([^>]*)>", cells)[1:]):
            if "strong" in cell:
                bold.add((loss, column))
    dial = imbalance_frame(report.summary)
    pick = "idxmin" if metric == "ece" else "idxmax"
    best = dial.loc[getattr(dial.groupby("fg_fraction")["score_mean"], pick)()]
    fractions = sorted(dial["fg_fraction"].unique())
    assert bold == {(row.loss, fractions.index(row.fg_fraction)) for row in best.itertuples()}


def _page_rows(text: str, label: str) -> list[list[str]]:
    """The body rows of the page's table ``label`` (its aria-label), each cell's text, a
    bold (td.strong) cell starred as the terminal stars it when piped."""
    table = text[text.index(f'aria-label="{label}"') :]
    table = table[: table.index("</table>")]
    rows = []
    for row in re.findall(r"<tr[^>]*data-loss=[^>]*>(.*?)</tr>", table):
        cells = re.findall(r"<td([^>]*)>(.*?)</td>", row)
        rows.append(
            [("*" if "strong" in attrs else "") + htmllib.unescape(cell) for attrs, cell in cells]
        )
    return rows


def _printed(rows: list[list[str]], output: str) -> None:
    """Each row is a line the terminal printed: the same cells in the same order."""
    lines = output.splitlines()
    for cells in rows:
        pattern = r"\s*" + r"\s+".join(map(re.escape, cells)) + r"\s*"
        assert any(re.fullmatch(pattern, line) for line in lines), (cells, output)


@pytest.mark.parametrize(
    ("kind", "tables"),
    [
        ({"datasets": [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]}, 4),
        ({"class_names": ("background", "pet", "border"), "seeds": (0,)}, 2),
        ({"lrs": [1e-3, 3e-3], "diverged": {("focal", 1): 2}}, 1),
    ],
    ids=["dial", "multiclass-one-seed", "lr-grid-diverged"],
)
def test_every_number_on_the_page_is_the_terminals(cli, tmp_path, kind, tables):
    """The page's tables (comparison, dial, per class) read against what `report` prints,
    row by row: the same cells, the dial's bold cells the terminal's starred ones. (A
    grid's rates are the page's alone: test_an_lr_grid_shows_every_losss_validation_score.)"""
    run_dir = write_run(tmp_path, quality=QUALITY, panel=False, **kind)
    result = cli("report", run_dir, "--html", tmp_path / "page.html")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "page.html").read_text()
    labels = re.findall(r'<table class="sortable[^"]*" aria-label="([^"]+)"', text)
    labels = [label for label in labels if " by learning rate on " not in label]
    assert len(labels) == tables
    for label in labels:
        rows = _page_rows(text, label)
        assert len(rows) == 3
        _printed(rows, result.stdout)


def test_the_figures_of_an_lr_grid_say_they_draw_the_tables_rates(tmp_path):
    """Each loss is drawn at the rate the table chose; the captions did not say which of
    the rates tried a curve or a prediction was trained at."""
    rates = {"lrs": [1e-3, 3e-3], "rate_quality": {1e-3: -0.1, 3e-3: 0.0}}
    captions = re.findall(r"<figcaption>([^<]*)", page_of(write_run(tmp_path, **rates)))
    assert len(captions) == 2
    assert all("each loss at the table&#x27;s learning rate" in c for c in captions)
    one_rate = re.findall(r"<figcaption>([^<]*)", page_of(write_run(tmp_path / "one")))
    assert not any("learning rate" in c for c in one_rate)


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_the_dial_and_class_captions_promise_an_sd_only_where_there_is_one(tmp_path, seeds):
    """They said 'mean ± sd over seeds' of a one-seed run, whose cells hold one score."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.2)]
    dial = write_run(tmp_path / "dial", quality=QUALITY, datasets=datasets, seeds=seeds)
    classes = ("background", "pet", "border")
    multiclass = write_run(tmp_path / "classes", class_names=classes, seeds=seeds, panel=False)
    said = "mean ± sd over seeds" if len(seeds) > 1 else "one seed, no sd"
    assert f"validation, {said}) by foreground fraction;" in page_of(dial)
    assert f"validation, {said}; the headline averages" in page_of(multiclass)


def test_the_chosen_rate_is_bold_in_its_own_column_where_two_rates_print_alike(tmp_path):
    """The bold mark found a column's rate by its title: 1e-3 and 1.0000001e-3 are both
    'lr 0.001', and the one chosen was looked up as the other."""
    alike = {1e-3: 0.0, 1.0000001e-3: -0.1}
    run_dir = write_run(tmp_path, quality=QUALITY, lrs=list(alike), rate_quality=alike)
    report = build_report([run_dir])
    rows = _page_rows(html.page(report), "Validation Dice by learning rate on synthetic")
    summary = report.summary
    assert set(summary.loc[summary["lr_chosen"], "lr"]) == {1e-3}
    for row in rows:
        scores = summary[summary["loss"] == row[0]].set_index("lr")["val_score_mean"]
        assert row[1:] == [f"*{scores[1e-3]:.3f}", f"{scores[1.0000001e-3]:.3f}"]


def test_an_lr_grid_shows_every_losss_validation_score_at_every_rate(tmp_path):
    """The page showed each loss at its chosen rate only ('summary.csv lists every rate'):
    mailed alone, it did not say how close the other rates came, nor that a loss chose an
    end of the grid, where its best rate may lie beyond it."""
    middle = {1e-3: -0.1, 3e-3: 0.0, 1e-2: -0.05}
    run_dir = write_run(tmp_path, quality=QUALITY, lrs=list(middle), rate_quality=middle)
    report = build_report([run_dir])
    text = html.page(report)
    rows = _page_rows(text, "Validation Dice by learning rate on synthetic")
    summary = report.summary
    chosen = summary[summary["lr_chosen"]].sort_values("rank")
    assert [row[0] for row in rows] == list(chosen["loss"]) == ["dice", "tversky", "focal"]
    for row in rows:
        scores = summary[summary["loss"] == row[0]].set_index("lr")["val_score_mean"]
        assert row[1:] == [f"{scores[1e-3]:.3f}", f"*{scores[3e-3]:.3f}", f"{scores[1e-2]:.3f}"]
    assert "Every loss chose a rate inside the grid." in text
    low = {1e-3: 0.0, 1e-2: -0.1}
    edge = html.page(build_report([write_run(tmp_path / "edge", lrs=list(low), rate_quality=low)]))
    assert (
        "3 of the 3 chosen rates are an end of the grid (0.001 or 0.01): there a loss&#x27;s "
        "best rate may lie beyond it." in edge
    )
    assert "<h2>Learning rates</h2>" not in page_of(write_run(tmp_path / "one", quality=QUALITY))
