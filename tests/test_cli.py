"""The command line: help, errors a user can cause, and nothing half-written."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading

import pytest
from conftest import REPO, SMOKE
from fixtures_data import needs_albumentations

COMMANDS = [
    [],
    ["run"],
    ["report"],
    ["losses"],
    ["datasets"],
    ["datasets", "list"],
    ["datasets", "download"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_explains_itself(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 5


def _command_paths(command, path=()):
    """Every command and subcommand of the app, as the words that name it."""
    yield list(path)
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


def test_no_help_page_shows_a_value_for_a_flag(cli):
    """'--help <bool>', '--amp --no-amp <bool>': Typer 0.29 named a flag's type where an
    option's value goes, as if the flag took one."""
    import typer

    from losscmp.cli import app

    paths = list(_command_paths(typer.main.get_command(app)))
    assert ["datasets", "download"] in paths
    for path in paths:
        result = cli(*path, "--help")
        assert result.exit_code == 0, path
        assert "--help" in result.output and "<bool>" not in result.output, path


@pytest.mark.parametrize(
    ("command", "usage", "argument_row"),
    [
        (["report"], "[OPTIONS] PATH...", "* PATH Run folders"),
        (["losses"], "[OPTIONS] [PATTERN]", "PATTERN Filter names"),
        (["datasets", "download"], "[OPTIONS] NAME", "* NAME Dataset to fetch"),
    ],
)
def test_help_shows_an_argument_by_its_name_alone(cli, command, usage, argument_row):
    """Typer 0.29 wrote 'PATH <list[str]>' (a Python type) in the arguments' panel and
    '{PATH}...' (which reads as a set of choices) in the usage line."""
    text = " ".join(cli(*command, "--help").output.replace("│", " ").split())
    assert usage in text
    assert argument_row in text
    assert "<str>" not in text and "<list[str]>" not in text and "{" not in text


def test_the_switches_are_flags_alone(cli):
    """'--dry-run --no-dry-run ... [default: no-dry-run]': a second spelling that only
    restates the default, which the README's synopsis does not have."""
    for command, flag in ((["run"], "--dry-run"), (["report"], "--plots")):
        text = cli(*command, "--help").output
        assert flag in text and f"--no-{flag[2:]}" not in text, flag
        assert f"default: no-{flag[2:]}" not in text, flag


def test_top_level_help_lists_the_commands(cli):
    output = cli("--help").output
    for command in ("run", "report", "losses", "datasets"):
        assert command in output


def test_report_help_names_every_headline_metric(cli):
    from losscmp.summary import METRICS

    words = set(re.findall(r"\w+", cli("report", "--help").output))
    assert set(METRICS) <= words


def test_report_help_offers_an_option_for_every_file_output(cli):
    from losscmp.render import RENDERERS

    text = " ".join(cli("report", "--help").stdout.replace("│", " ").split())
    for name, renderer in RENDERERS.items():
        assert f"--{name} FILE Also write {renderer.description} to FILE." in text


def test_a_new_file_output_gets_its_option_from_its_renderers_line(monkeypatch, tmp_path):
    """report's --csv and --html were written out in cli.py: a new output took an option and
    an entry in its files there besides its module and its line in render.RENDERERS."""
    import typer
    from typer.testing import CliRunner

    from losscmp import cli as cli_module
    from losscmp import render

    tsv = render.Renderer("tsv", "losscmp.render.csv", "the table as TSV", "summary.tsv")
    monkeypatch.setitem(render.RENDERERS, "tsv", tsv)
    given = {}

    def command(paths: list[str], plots: bool = False, **files: str | None) -> None:
        given.update(files, plots=plots)

    app = typer.Typer()
    app.command()(cli_module.with_file_options(command))
    app.command("other")(lambda: None)  # two commands: each is named on the command line
    result = CliRunner().invoke(app, ["command", "a", "--tsv", "t.tsv", "--plots"])
    assert result.exit_code == 0, result.output
    assert given == {**dict.fromkeys(render.RENDERERS), "tsv": "t.tsv", "plots": True}
    help_text = CliRunner().invoke(app, ["command", "--help"]).stdout
    assert "Also write the table as TSV to FILE." in help_text


MARKDOWN_OUTPUT = """
def content(report):
    return f"# {report}\\n"
"""


def markdown_renderer(monkeypatch, tmp_path, module: str = MARKDOWN_OUTPUT):
    """A new file output as its recipe makes it: a module with content(report), one line."""
    from losscmp import render

    (tmp_path / "scratch_markdown.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    renderer = render.Renderer("md", "scratch_markdown", "the table as Markdown", "summary.md")
    monkeypatch.setitem(render.RENDERERS, "md", renderer)
    return renderer


def test_a_new_file_output_is_written_into_a_folder_it_makes(monkeypatch, tmp_path):
    """check_target accepts a folder that can be made, and the csv and html writers made it
    themselves: a new renderer that did not (its own open()) failed with a traceback on
    'report --md new/x.md'. Renderer.write makes it for every output."""
    renderer = markdown_renderer(monkeypatch, tmp_path)
    target = tmp_path / "new" / "deeper" / "x.md"
    assert renderer.write("the table", target) == target
    assert target.read_text() == "# the table\n"
    assert [path.name for path in target.parent.iterdir()] == ["x.md"]  # no temp file left


def test_a_new_file_outputs_failed_write_is_one_line(monkeypatch, tmp_path):
    import errno

    from losscmp import results
    from losscmp.errors import LosscmpError

    renderer = markdown_renderer(monkeypatch, tmp_path)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "atomic_write_bytes", full)
    with pytest.raises(LosscmpError) as refused:
        renderer.write("the table", tmp_path / "x.md")
    assert str(refused.value) == f"cannot write {tmp_path / 'x.md'}: No space left on device"


def test_a_new_file_outputs_target_is_checked_before_it_renders(monkeypatch, tmp_path):
    from losscmp.errors import LosscmpError

    renderer = markdown_renderer(
        monkeypatch, tmp_path, "def content(report):\n    raise AssertionError('rendered')\n"
    )
    with pytest.raises(LosscmpError, match="is a folder; give a file name, e.g. .*summary.md"):
        renderer.write("the table", tmp_path)


def test_help_is_fast_and_does_not_import_torch():
    probe = (
        "import json, sys, time\n"
        "start = time.process_time()\n"
        "from losscmp.cli import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'segmentation_models_pytorch', 'pandas', 'albumentations')"
        " if m in sys.modules]\n"
        "print(json.dumps({'seconds': time.process_time() - start, 'heavy': heavy}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    measured = json.loads(output.strip().splitlines()[-1])
    assert measured["heavy"] == []
    # CPU seconds, not wall: a loaded machine (tests side by side) must not fail it.
    assert measured["seconds"] < 0.5, f"losscmp --help took {measured['seconds']:.2f} s"


def test_import_losscmp_lists_its_api_and_imports_no_torch():
    """A notebook's ``import losscmp`` and its listings stay light; ``dir`` (completion)
    offers the public names that load lazily."""
    probe = (
        "import json, sys\n"
        "import losscmp\n"
        "names = dir(losscmp)\n"
        "listed = [losscmp.list_losses('tversky'), losscmp.list_datasets('syn*')]\n"
        "heavy = [m for m in ('torch', 'segmentation_models_pytorch', 'pandas')"
        " if m in sys.modules]\n"
        "print(json.dumps({'api': [n for n in losscmp.__all__ if n in names], 'listed': listed,"
        " 'heavy': heavy}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == {
        "api": ["create_loss", "list_losses", "load_dataset", "list_datasets", "__version__"],
        "listed": [["tversky"], ["synthetic"]],
        "heavy": [],
    }


# What a user types to look around, and mistakes refused before anything runs: none of
# them needs torch (2 s and more to import), so none may import it.
LOOKING_AROUND = [
    (["losses"], 0),
    (["losses", "*dice*"], 0),
    (["losses", "--show", "tversky"], 0),
    (["losses", "dcie"], 2),
    (["losses", "--show", "dcie"], 2),
    (["datasets"], 0),
    (["run", "--losses", "dcie"], 2),
    (["run", "--losses", "focal(gama=1)"], 2),
    (["run", "--losses", "tversky(alpha=x)"], 2),
    (["run", "--dataset", "petz"], 2),
    (["run", "--epochs", "0"], 2),
]
# report's mistakes are refused before the summary's libraries load (losscmp.report_args):
# neither pandas, numpy nor matplotlib. notarun/ is an empty folder the probe makes.
REPORT_MISTAKES = [
    ["report", "/nonexistent"],
    ["report", "notarun"],
    ["report", "notarun", "--metric", "dise"],
    ["report", "notarun", "--csv", "notarun"],
    ["report", "notarun", "--html", "/sys/losscmp/page.html"],
    ["report", "notarun", "--csv", "same", "--html", "same"],
]
LOOKING_AROUND += [(args, 2) for args in REPORT_MISTAKES]
SUMMARY_LIBRARIES = ("pandas", "numpy", "matplotlib")


@pytest.mark.parametrize(
    ("args", "code"), LOOKING_AROUND, ids=[" ".join(a) for a, _ in LOOKING_AROUND]
)
def test_looking_around_does_not_import_torch(tmp_path, args, code):
    probe = (
        "import json, sys\n"
        "from losscmp.cli import app\n"
        "try:\n"
        "    app(sys.argv[2:])\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        "heavy = [m for m in sys.argv[1].split(',') if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    heavy = ["torch", "segmentation_models_pytorch", "albumentations"]
    if args[0] == "report":
        heavy += SUMMARY_LIBRARIES
    (tmp_path / "notarun").mkdir()
    environment = {**os.environ, "PYTHONPATH": str(REPO)}  # run from tmp_path: this checkout
    done = subprocess.run(
        [sys.executable, "-c", probe, ",".join(heavy), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured == {"code": code, "heavy": []}, done.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--losses", "dcie"], "unknown loss 'dcie' (did you mean 'dice'?)"),
        (["--losses", "focal(gama=1)"], "has no parameter 'gama' (did you mean 'gamma'?)"),
        (["--losses", "tversky(alpha=x)"], "alpha='x' is not a number"),
        (["--losses", "tversky(alpha=-0.5)"], "alpha must be >= 0"),
        (["--losses", "dice,focal(gamma=1"], "unclosed"),
        (["--dataset", "synthetik"], "unknown dataset 'synthetik' (did you mean 'synthetic'?)"),
        (["--dataset", "synthetic(fg_fraction=2)"], "fg_fraction"),
        (["--epochs", "-1"], "--epochs must be between 1 and 100000, got -1"),
        (["--image-size", "50"], "--image-size must be a multiple of 32"),
        (["--device", "tpu"], "--device must be one of"),
        (["--model", "huge"], "--model must be one of auto, tiny, small, medium, got 'huge'"),
        (["--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["--dataset", "pets", "--data-dir", "nowhere"], "losscmp datasets download pets"),
        (["--losses", "focal(gamma=-1)"], "loss 'focal': gamma must be >= 0"),
        (["--losses", "tversky,tversky(alpha=0.3,beta=0.7)"], "is the same loss as 'tversky'"),
        (["--losses", "dice,focal,dice"], "'dice' is listed twice"),
        (["--losses", "dice(smooth=1),dice(smooth=1.0)"], "'dice(smooth=1.0)' is listed twice"),
        (["--losses", "dice(class_weights=[1,2])"], "class_weights has 2 values"),
        (
            ["--losses", "focal(alpha=[0.2,0.8])", "--dataset", "synthetic(num_classes=3)"],
            "alpha has 2 values for 3 classes",
        ),
        (["--model", "small", "--image-size", "32"], "too small for the small model"),
        (["--lr", "inf"], "--lr must be a positive finite number, got inf"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(cli, tmp_path, args, message):
    out = tmp_path / "results"
    epochs = [] if "--epochs" in args else ["--epochs", "1"]
    result = cli("run", *args, *epochs, "--out", out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("losscmp: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("yaml", "flags", "expected"),
    [
        (
            "image_size: 32\nmodel: small\n",
            [],
            "{config}: 'image_size' 32 is too small for the small model (its deepest features "
            "would be 1x1); use 64 or more, or 'model' tiny",
        ),
        (
            "image_size: 32\n",
            ["--model", "small"],
            "{config}: 'image_size' 32 is too small for the small model (its deepest features "
            "would be 1x1); use 64 or more, or --model tiny",
        ),
        (
            "epochs: 1\n",
            ["--model", "small", "--image-size", "32"],
            "--image-size 32 is too small for the small model (its deepest features would be "
            "1x1); use 64 or more, or --model tiny",
        ),
    ],
)
def test_a_too_small_image_names_the_options_where_they_were_given(
    cli, tmp_path, yaml, flags, expected
):
    """'image_size: 32' and 'model: small' in a config file were refused as '--image-size 32
    ... or --model tiny', flags the command line did not have."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml + "dataset: synthetic(n_train=8,n_val=4,n_test=4)\n")
    out = tmp_path / "r"
    result = cli("run", "--config", config, *flags, "--device", "cpu", "--dry-run", "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"losscmp: error: {expected.format(config=f'config file {config}')}\n"
    assert not out.exists()


def test_invalid_yaml_config(cli, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("losses: [dice\nepochs: 2\n")
    result = cli("run", "--config", config, "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "is not valid YAML" in result.stderr


def test_losses_lists_the_registry_with_descriptions(cli):
    from losscmp.losses import list_losses

    result = cli("losses")
    assert result.exit_code == 0
    for name in list_losses():
        assert name in result.output
    assert "tversky" in cli("losses", "*tver*").output
    assert "dice " not in cli("losses", "*tver*").output


def test_losses_show_gives_formula_parameters_and_paper(cli):
    result = cli("losses", "--show", "tversky")
    assert result.exit_code == 0
    for text in ("alpha", "beta", "0.3", "0.7", "Salehi"):
        assert text in result.output


def test_unknown_loss_in_show_suggests(cli):
    result = cli("losses", "--show", "tverski")
    assert result.exit_code == 2
    assert "did you mean 'tversky'" in result.stderr


def test_report_on_missing_folder(cli, tmp_path):
    result = cli("report", tmp_path / "nothing")
    assert result.exit_code == 2
    assert result.stderr.startswith("losscmp: error: ")


def _plan_line(output: str) -> str:
    """The dry run's settings line (the one before its 'executing:' line), as one line
    whatever width it was printed at."""
    lines = output.strip().splitlines()
    assert lines[-1].startswith("executing: ")
    return " ".join(lines[-2].split())


def test_dry_run_prints_trials_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "r"
    args = ["--losses", "dice,bce", "--seeds", "2", "--device", "cpu", "--jobs", "8"]
    result = cli("run", *args, "--dry-run", "--out", out)
    assert result.exit_code == 0
    assert "4 planned trials" in result.output
    assert result.output.count("seed") >= 1
    assert _plan_line(result.output) == (
        "8 epochs, batch 16, image 64px, executor local, model tiny (auto), device cpu, "
        f"jobs 4 (8 set: only 4 to run), fuse off (auto: CPU), results under {out}/ "
        "(a new run folder)"
    )
    assert not out.exists()


def test_a_dry_run_says_what_auto_resolves_to_in_the_singular(cli, tmp_path):
    """It said '1 planned trials', '1 epochs' and 'model auto, device auto, jobs auto,
    fuse auto', though the dry run had resolved each of them."""
    from losscmp.devices import resolve_device

    out = tmp_path / "r"
    result = cli("run", "--losses", "dice", "--epochs", "1", "--dry-run", "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 planned trial (dry run: nothing trained)" in result.output
    device = resolve_device("auto").type  # tiny on the CPU, small on a GPU; fused on CUDA
    model, fuse = (
        ("tiny", "off") if device == "cpu" else ("small", "on" if device == "cuda" else "off")
    )
    assert _plan_line(result.output) == (
        f"1 epoch, batch 16, image 64px, executor local, model {model} (auto), "
        f"device {device} (auto), jobs 1 (auto), fuse {fuse} (auto: {device.upper()}), "
        f"results under {out}/ (a new run folder)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("fuse", "executing"),
    [
        ("on", "executing: in this process, 1 thread, losses fused per seed and learning "
         "rate (4 fused models of 2 losses)"),
        ("off", "executing: in this process, 1 thread"),
        ("OFF", "executing: in this process, 1 thread"),  # was: did you mean 'off'?
    ],
)  # fmt: skip
def test_a_dry_run_says_how_the_trials_would_run(cli, tmp_path, fuse, executing):
    """Whether the losses of a seed are fused, and into how many models: a dry run said only
    the option given ("fuse auto"), so on a GPU it never said that every loss is fused."""
    tiny = ["--dataset", "synthetic(n_train=16,n_val=8)", "--image-size", "32", "--threads", "1"]
    grid = ["--losses", "dice,bce", "--seeds", "2", "--lr-grid", "1e-3,3e-3"]
    result = cli("run", *tiny, *grid, "--fuse", fuse, "--dry-run", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-1] == executing


def test_a_resumed_dry_run_says_how_the_rest_would_run(cli, tmp_path):
    """With the run's own threads (run.json), which the rest keeps, not this machine's."""
    from run_fixtures import write_run

    execution = {"executor": "local", "jobs": 1, "threads": 3, "fused": True}
    run_dir = write_run(
        tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0,), config={"fuse": "on"},
        extra_meta={"execution": {**execution, "ray_address": None, "fused_adamw": True}},
    )  # fmt: skip
    result = cli("run", "--resume", run_dir, "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-1] == (
        "executing: in this process, 3 threads, losses fused per seed (1 fused model of 2 losses)"
    )


def test_a_resumed_dry_run_names_no_flag_the_user_did_not_type(cli, tmp_path):
    """The run's own --jobs 2 (run.json), one trial left: it said '--jobs 2: only 1 to run'
    to a user who typed no --jobs."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), config={"jobs": 2})
    result = cli("run", "--resume", run_dir, "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "jobs 1 (2 set: only 1 to run)" in _plan_line(result.output)


def test_a_dry_run_prints_brackets_in_labels_and_paths_as_typed(cli, tmp_path, monkeypatch):
    """Rich reads [v2] as a style tag (dropped) and [/b] as a closing one (a crash)."""
    from fixtures_data import make_folder

    monkeypatch.setenv("COLUMNS", "400")  # the label on one line of the table

    make_folder(tmp_path / "scans[v2]")
    out = tmp_path / "o[/b]"
    result = cli("run", "--dataset", f"folder:{tmp_path / 'scans[v2]'}", "--dry-run", "--out", out)
    assert result.exit_code == 0, result.output
    assert "scans[v2]')" in result.output and f"{out}/" in result.output
    assert not out.exists()


def test_the_datasets_table_prints_brackets_as_typed(cli, tmp_path):
    result = cli("datasets", "--root", tmp_path / "d[/x]")
    assert result.exit_code == 0, result.output
    assert "d[/x]" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["datasets", "--root", "{root}"],
        ["datasets", "list", "--root", "{root}"],
        ["datasets", "--root", "{root}", "list"],
    ],
    ids=["datasets", "list", "root-before-list"],
)
def test_every_spelling_of_datasets_root_lists_that_folder(cli, tmp_path, monkeypatch, args):
    """'losscmp datasets --root DIR list' (the option as 'datasets --help' shows it, then
    the command) listed ./datasets instead of DIR."""
    monkeypatch.chdir(tmp_path)
    result = cli(*[arg.format(root="mine") for arg in args])
    assert result.exit_code == 0, result.output
    assert "mine/oxford-iiit-pet" in result.output
    assert "datasets/oxford-iiit-pet" not in result.output


def test_datasets_root_before_download_is_refused(cli, tmp_path, monkeypatch):
    """It was ignored: the download went to the default --data-dir."""
    monkeypatch.chdir(tmp_path)
    result = cli("datasets", "--root", "mine", "download", "pets")
    assert result.exit_code == 2
    assert "'datasets download' puts the data in --data-dir" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_dry_run_is_checked_and_marks_the_finished_trials(cli, tmp_path, monkeypatch):
    """From a folder where the run's recorded --out ("results") is a file, with --out naming
    the run's parent from here: resuming writes into the run folder only, so it is not
    refused for the recorded one."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "results").write_text("not a folder")
    monkeypatch.chdir(elsewhere)
    more = cli("run", "--resume", run_dir, "--seeds", "2", "--out", "../runs/", "--dry-run")
    assert more.exit_code == 0, more.output
    assert "2 of 4 planned trials still to train" in more.output
    assert more.output.count("finished │") == 2 and more.output.count("to train │") == 2
    assert "2 of 4 trials to train: 2 losses × 1 learning rate × 2 seeds on synthetic\n" in (
        more.output
    )
    changed = cli("run", "--resume", run_dir, "--epochs", "9", "--dry-run")
    assert changed.exit_code == 2 and "changes epochs" in changed.stderr


def test_a_dry_run_in_an_80_column_terminal_shows_which_dataset_each_trial_trains_on(
    cli, tmp_path, monkeypatch
):
    """Cut to 80 columns, every row of an --fg-fraction sweep read 'synthetic(fg_fraction…'
    and every id 'synthetic_fg_fraction…': the ids (made of the other columns) now go, and
    a spec too long for its column wraps whole."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stdout is a terminal
    monkeypatch.setenv("COLUMNS", "80")
    args = ["--config", SMOKE, "--losses", "dice,focal", "--fg-fraction", "0.01,0.05"]
    result = cli("run", *args, "--epochs", "1", "--out", tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    rows = re.findall(r"│ (\d) │ synthetic\(fg_fraction=(0\.0\d),n_train=48,\S* +│ (\w+) ", text)
    assert rows == [("1", "0.01", "dice"), ("2", "0.01", "focal")] + [
        ("3", "0.05", "dice"),
        ("4", "0.05", "focal"),
    ]
    assert "…" not in text and "┃ trial id" not in text
    assert "trial ids not shown at this width (80 columns)" in text
    assert max(len(line) for line in text.splitlines()[:-3]) <= 80


def test_a_dry_run_of_many_trials_counts_them_under_the_table(cli, tmp_path, monkeypatch):
    """A grid of every loss printed hundreds of rows, each with the one dataset's spec
    wrapped onto a second line at 80 columns, and its count only in the title above them;
    the trial-ids line wrapped at the narrow table's width."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stdout is a terminal
    monkeypatch.setenv("COLUMNS", "80")
    args = ["--config", SMOKE, "--losses", "dice,focal", "--seeds", "3", "--epochs", "1"]
    result = cli("run", *args, "--lr-grid", "1e-3,1e-2", "--out", tmp_path / "r", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout).splitlines()
    rows = [line.split() for line in lines if line.startswith("│")]
    assert rows[0] == ["│", "1", "│", "dice", "│", "0.001", "│", "0", "│"]
    assert len(rows) == 12 and "dataset" not in lines[2]  # one row a trial
    assert lines[-4:-2] == [
        "trial ids not shown at this width (80 columns)",
        "12 trials to train: 2 losses × 2 learning rates × 3 seeds on "
        "synthetic(fg_fraction=0.05,n_train=48,n_val=16,n_test=16)",
    ]
    assert not (tmp_path / "r").exists()


def test_a_resumed_dry_run_is_refused_while_another_process_writes_the_run(cli, tmp_path):
    """--dry-run makes the checks the run makes, yet passed a run folder that another
    losscmp process was writing, which the run then refused."""
    from run_fixtures import write_run

    from losscmp.results import RunStore

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,))
    with RunStore(run_dir).lock():  # as a run writing it holds it
        refused = cli("run", "--resume", run_dir, "--seeds", "2", "--dry-run")
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"losscmp: error: run folder {run_dir} is being written by another losscmp process "
        f"(pid {os.getpid()}); wait for it to finish, or stop it first\n"
    )
    free = cli("run", "--resume", run_dir, "--seeds", "2", "--dry-run")
    assert free.exit_code == 0, free.output


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_resume_refuses_an_out_it_would_ignore(cli, tmp_path, dry_run):
    """--out beside --resume was ignored (the run stays in its folder) yet recorded in the
    run's resume_command and report page as if it had been used."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    before = sorted(path.name for path in run_dir.rglob("*"))
    run_json = (run_dir / "run.json").read_text()
    elsewhere = tmp_path / "elsewhere"
    result = cli("run", "--resume", run_dir, "--seeds", "2", "--out", elsewhere, *dry_run)
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: --resume continues {run_dir} where it is, in {run_dir.parent}; "
        f"--out {elsewhere} would be ignored: leave --out out, or give that folder\n"
    )
    assert sorted(path.name for path in run_dir.rglob("*")) == before
    assert (run_dir / "run.json").read_text() == run_json and not elsewhere.exists()


def test_a_config_files_out_is_no_refusal_on_resume(cli, tmp_path):
    """The command that started a run, with --config, plus --resume: its 'out' key (a
    file's default, not this command's request) leaves the run where it is."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    config = tmp_path / "run.yaml"
    config.write_text(f"out: {tmp_path / 'elsewhere'}\n")
    result = cli("run", "--config", config, "--resume", run_dir, "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert _plan_line(result.output).endswith(f"results in {run_dir}/ (the run resumed)")


def test_a_resumed_dry_run_shows_the_fusion_the_run_keeps(cli, tmp_path):
    """It said 'fuse auto' whatever the run had recorded: a resume keeps the run's own."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    meta = json.loads((run_dir / "run.json").read_text())
    meta["execution"] = {"executor": "local", "jobs": 1, "threads": 1, "fused": True}
    (run_dir / "run.json").write_text(json.dumps(meta))
    result = cli("run", "--resume", run_dir, "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert _plan_line(result.output) == (
        "4 epochs, batch 4, image 32px, executor local, model tiny, device cpu, "
        f"jobs 1 (auto), fuse on (the run's), results in {run_dir}/ (the run resumed)"
    )


def test_dry_run_makes_the_checks_that_need_the_data(cli, tmp_path):
    """A loss for the other mode is known only once the dataset is: a dry run loads it."""
    out = tmp_path / "r"
    tiny = ["--dataset", "synthetic(n_train=16,n_val=8)", "--image-size", "32", "--device", "cpu"]
    result = cli("run", "--losses", "dice,ce", *tiny, "--dry-run", "--out", out)
    assert result.exit_code == 2 and "'ce' is defined for multiclass mode only" in result.stderr
    assert not out.exists()


def test_unreachable_pretrained_weights_fail_before_the_run_folder(cli, tmp_path, monkeypatch):
    import segmentation_models_pytorch as smp

    def offline_unet(*args, encoder_weights=None, **kwargs):
        if encoder_weights:
            raise OSError("We couldn't connect to the Hub")
        return real_unet(*args, encoder_weights=encoder_weights, **kwargs)

    real_unet = smp.Unet
    monkeypatch.setattr(smp, "Unet", offline_unet)
    out = tmp_path / "runs"
    result = cli("run", "--encoder-weights", "imagenet", "--epochs", "1", "--out", out)
    assert result.exit_code == 2
    assert "could not load 'imagenet' encoder weights" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--epochs", "abc"], "--epochs must be a whole number, got 'abc'"),
        (["run", "--bogus"], "No such option: --bogus (see 'losscmp run --help')"),
        (["datasets", "foo"], "No such command 'foo'"),
        (["report"], "Missing argument 'PATH'. (see 'losscmp report --help')"),
        # Under 'python -m' click named the program 'python -m losscmp' where it had the
        # context, and an option's missing value 'losscmp': one name for both now.
        (["report", ".", "--metrc"], "(did you mean '--metric'?) (see 'losscmp report --help')"),
        (["report", ".", "--csv"], "requires an argument. (see 'losscmp report --help')"),
    ],
)
def test_usage_errors_are_one_line_too(args, message):
    done = subprocess.run(
        [sys.executable, "-m", "losscmp", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("losscmp: error: "), done.stderr
    assert message in lines[0]


def test_no_arguments_print_the_help_once():
    """'losscmp' alone printed the whole help twice: Typer prints it while making the
    error that asks for it, and the entry point printed it again."""
    done = subprocess.run(
        [sys.executable, "-m", "losscmp"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.count("Usage:") == 1 and "datasets" in done.stdout
    assert done.stderr == ""


def test_out_must_be_a_folder(cli, tmp_path):
    taken = tmp_path / "file"
    taken.write_text("x")
    result = cli("run", "--out", taken, "--epochs", "1")
    assert result.exit_code == 2
    assert "is a file" in result.stderr


def test_dry_run_shows_canonical_labels(cli, tmp_path):
    result = cli(
        "run",
        "--losses",
        "dice(reduction=image,smooth=2)",
        "--dataset",
        " synthetic( n_val=8 , fg_fraction=0.2)",
        "--dry-run",
    )
    assert result.exit_code == 0
    assert "dice(smooth=2.0,reduction=image)" in result.stdout
    assert "synthetic(fg_fraction=0.2,n_val=8)" in result.stdout


@pytest.mark.slow
def test_quick_exit_runs_exit_handlers_and_keeps_output_and_status():
    """``run_command_then_exit_fast`` skips the interpreter teardown: what is printed to a
    pipe, the exit handlers (MLflow, multiprocessing) and the status must all survive it."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
        "sys.argv = ['losscmp', *sys.argv[1:]]\n"
        "from losscmp.cli import run_command_then_exit_fast\n"
        "run_command_then_exit_fast()\n"
    )

    def losscmp(*args):
        return subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60
        )

    listing = losscmp("losses")
    assert listing.returncode == 0
    assert listing.stdout.count("\n") > 26 and "unified_focal" in listing.stdout
    assert listing.stderr == "handler ran\n"
    refused = losscmp("run", "--losses", "dcie", "--dry-run")
    assert refused.returncode == 2
    first, last = refused.stderr.splitlines()
    assert first.startswith("losscmp: error: ") and "dice" in first
    assert last == "handler ran"


def test_a_terminal_escape_typed_in_a_name_is_shown_escaped(cli):
    result = cli("losses", "--show", "\x1b[31mred\ttab")
    assert result.exit_code == 2
    assert result.stderr.startswith("losscmp: error: unknown loss '\\x1b[31mred\\ttab'")
    assert "\x1b" not in result.stderr and "\t" not in result.stderr


def test_losses_refuses_a_pattern_beside_show(cli):
    result = cli("losses", "*dice*", "--show", "focal")
    assert result.exit_code == 2
    assert "or --show NAME, not both" in result.stderr


def test_report_writes_relative_targets_from_inside_a_run_folder(cli, tmp_path, monkeypatch):
    """Only the run's record folders are refused: not a new file beside them, above them or
    in a folder of the user's own inside the run."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    (run_dir / "exports").mkdir()
    monkeypatch.chdir(run_dir)
    result = cli("report", ".", "--csv", "table.csv", "--html", "../page.html")
    assert result.exit_code == 0, result.output
    assert (run_dir / "table.csv").is_file() and (tmp_path / "page.html").is_file()
    assert cli("report", ".", "--csv", "exports/x.csv").exit_code == 0
    refused = cli("report", ".", "--csv", "trials/x.json")
    assert refused.exit_code == 2 and "among its records" in refused.stderr


def test_losses_show_prints_formulas_with_brackets_whole(cli):
    """Rich read [beta y log p ...] as markup and dropped it."""
    from losscmp.losses import get_loss_entry, list_losses

    for name in list_losses():
        formula = get_loss_entry(name).formula
        if formula and "[" in formula:
            output = " ".join(cli("losses", "--show", name).output.split())
            assert " ".join(formula.split()) in output, name


@needs_albumentations
def test_a_folder_named_with_a_backslash_and_both_quotes_is_found(cli, tmp_path):
    """Its label is quoted (the single quote doubled, the backslash as it is); reading the
    label back must give the same path."""
    from fixtures_data import make_folder

    root = tmp_path / "d s\\bk 'both\""
    make_folder(root, count=6)
    out = tmp_path / "runs"
    args = ["--dataset", f"folder:{root}", "--losses", "dice", "--image-size", "32"]
    result = cli("run", *args, "--epochs", "1", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    quoted = str(root).replace("'", "''")
    assert meta["config"]["dataset"] == f"folder(path='{quoted}')"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("dcie", "no loss matches 'dcie' (did you mean 'dice'?)"), ("zz*", "no loss matches 'zz*'")],
)
def test_a_loss_pattern_that_matches_nothing_suggests_a_name(cli, pattern, message):
    result = cli("losses", pattern)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"losscmp: error: {message}"


def test_a_loss_pattern_matches_whatever_its_case(cli):
    result = cli("losses", "DICE")
    assert result.exit_code == 0, result.output
    assert "│ dice " in result.stdout
    assert result.stdout.split()[:2] == ["1", "loss"]


def test_show_takes_a_loss_name_whatever_its_case(cli):
    """As 'losscmp losses DICE' lists it: 'Boundary' is the loss, not its family."""
    result = cli("losses", "--show", "Boundary")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("boundary — Dice + alpha·boundary loss")


def test_out_naming_a_run_folder_suggests_resuming_it(cli, tmp_path):
    from run_fixtures import write_run

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,))
    result = cli("run", "--out", run_dir, "--epochs", "1")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(f"(did you mean --resume {run_dir}?)")


def test_a_resumed_runs_missing_relative_data_names_where_it_was_started(
    cli, tmp_path, monkeypatch
):
    from run_fixtures import write_run

    started_in = tmp_path / "project"
    run_dir = write_run(
        tmp_path / "runs",
        quality={"dice": 0.8},
        seeds=(0,),
        config={"dataset": "folder(path=data)"},
        extra_meta={"working_dir": str(started_in)},
    )
    monkeypatch.chdir(tmp_path)
    result = cli("run", "--resume", run_dir, "--dry-run")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "data is not a folder" in line
    assert line.endswith(
        f"(this run was started in {started_in}: relative paths are read from the folder "
        "you run losscmp in)"
    )
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    same_folder = cli("run", "--resume", run_dir, "--dry-run")
    assert same_folder.exit_code == 2 and "this run was started" not in same_folder.stderr
    absolute = write_run(
        tmp_path / "more-runs",
        quality={"dice": 0.8},
        seeds=(0,),
        config={"dataset": f"folder(path={tmp_path / 'gone'})"},
        extra_meta={"working_dir": str(tmp_path / "elsewhere")},
    )
    read_as_given = cli("run", "--resume", absolute, "--dry-run")  # no relative path to blame
    assert read_as_given.exit_code == 2 and "this run was started" not in read_as_given.stderr


# The installed command, with the import of one module (argv[1]) held up until a signal
# comes: a stop while that module loads, made certain (not a race with a timer).
HELD_IMPORT = """
import signal, sys, time

# As Python starts in a terminal: Ctrl-C a KeyboardInterrupt (a job a shell put in the
# background, pytest too, inherits it ignored, and losscmp leaves it so).
signal.signal(signal.SIGINT, signal.default_int_handler)
held = sys.argv[1]

class Hold:
    def find_spec(self, name, path=None, target=None):
        if name == held:
            print("importing", name, flush=True)
            time.sleep(60)
        return None

sys.meta_path.insert(0, Hold())
sys.argv = ["losscmp", *sys.argv[2:]]
from losscmp.__main__ import main
main()
"""


@pytest.mark.parametrize(
    ("held", "stop", "status", "said"),
    [
        # the CLI's own imports, before the command begins
        ("typer", signal.SIGINT, 130, "interrupted before the command began; nothing was written"),
        (
            "typer",
            signal.SIGTERM,
            143,
            "terminated (SIGTERM) before the command began; nothing was written",
        ),
        # the run's imports (config, plan, runner), before its folder is made
        ("losscmp.plan", signal.SIGINT, 130, "interrupted"),
        ("losscmp.plan", signal.SIGTERM, 143, "terminated (SIGTERM)"),
        # the terminal closed: a hang-up, told as SIGTERM is
        (
            "typer",
            signal.SIGHUP,
            129,
            "terminated (SIGHUP) before the command began; nothing was written",
        ),
        ("losscmp.plan", signal.SIGHUP, 129, "terminated (SIGHUP)"),
    ],
)
def test_a_stop_while_modules_load_is_one_line(tmp_path, held, stop, status, said):
    """Ctrl-C in the first tenths of a second of 'losscmp run' (Typer, Rich importing)
    printed Python's KeyboardInterrupt traceback, and SIGTERM until the run was planned
    ended it without a word; nothing is written then, and one line says so."""
    out = tmp_path / "out"
    args = ["run", "--config", str(SMOKE), "--epochs", "1", "--out", str(out)]
    loading = subprocess.Popen(
        [sys.executable, "-c", HELD_IMPORT, held, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert loading.stdout.readline() == f"importing {held}\n"
    os.kill(loading.pid, stop)
    _, stderr = loading.communicate(timeout=60)
    assert loading.returncode == status
    assert stderr == f"losscmp: {said}\n"
    assert not out.exists()


def test_ctrl_c_before_the_run_folder_exists_says_interrupted(cli, tmp_path, monkeypatch):
    """Typer turns a KeyboardInterrupt leaving a command into a silent exit 130: the
    command itself must say so (here while the data loads, before any folder)."""
    import losscmp.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(losscmp.runner, "prepare", interrupted)
    result = cli("run", "--config", SMOKE, "--out", tmp_path / "out")
    assert result.exit_code == 130
    assert result.stderr == "losscmp: interrupted\n"
    assert not (tmp_path / "out").exists()


def test_ctrl_c_right_after_the_run_folder_appears_names_it(cli, tmp_path, monkeypatch):
    """Ctrl-C while a new run sets its folder up (panels written, tables rebuilt, before
    the progress display starts) said only 'losscmp: interrupted', though it left a folder
    that --resume finishes."""
    import os
    import signal
    import time

    from losscmp.results import RunStore

    def interrupted(store) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, as it reaches this process
        time.sleep(5)  # where its KeyboardInterrupt lands

    monkeypatch.setattr(RunStore, "rebuild_tables", interrupted)
    # in the order the printed command gives them
    args = ["--config", SMOKE, "--losses", "dice", "--epochs", "1", "--out", tmp_path]
    result = cli("run", *args)
    assert result.exit_code == 130
    (run_dir,) = tmp_path.iterdir()
    stopped, command = result.stderr.splitlines()[-1].split(". Finish the run with: ")
    assert stopped == f"losscmp: interrupted; finished trials are saved in {run_dir}"
    # The command itself, to copy (it read 'the same command plus --resume DIR'), and it
    # finishes the run as printed
    assert command == shlex.join(["losscmp", "run", *map(str, args), "--resume", str(run_dir)])
    monkeypatch.undo()
    resumed = cli(*shlex.split(command)[1:])
    assert resumed.exit_code == 0, resumed.output
    assert len(list((run_dir / "trials").glob("*.json"))) == 1


class _CtrlCInAFinalizer:
    """Ctrl-C reaching this process while Python runs a finalizer: the KeyboardInterrupt
    raised there is printed as "Exception ignored" and dropped."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)  # its handler runs here, at once


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_ctrl_c_dropped_in_a_finalizer_still_stops_the_run(cli, tmp_path, monkeypatch, jobs):
    """Ctrl-C landing in a finalizer (a garbage collection) was lost: the run trained on
    to its end and exited 0 (twice in 11 tries of --jobs 2 --fuse on in a terminal).
    The handler records the stop and the run raises it again: in this process at the
    next training step, with workers at the next wait on them."""
    from losscmp.results import RunStore

    write_trial = RunStore.write_trial

    def written_then_ctrl_c_in_a_finalizer(store, record, **kwargs) -> None:
        write_trial(store, record, **kwargs)
        _CtrlCInAFinalizer()  # collected at once

    monkeypatch.setattr(RunStore, "write_trial", written_then_ctrl_c_in_a_finalizer)
    args = ["--config", SMOKE, "--seeds", "2", "--epochs", "1", "--jobs", jobs]
    result = cli("run", *args, "--out", tmp_path)
    assert result.exit_code == 130, result.output
    (run_dir,) = tmp_path.iterdir()
    stopped = result.stderr.splitlines()[-1].split(". Finish the run with: ")[0]
    assert stopped == f"losscmp: interrupted; finished trials are saved in {run_dir}"
    saved = len(list((run_dir / "trials").glob("*.json")))
    # Of 6: the first; with workers, the other's too where it ended in the same wake-up.
    assert saved == 1 if jobs == 1 else 1 <= saved <= 2


def test_a_ctrl_c_as_the_command_ends_leaves_no_stop_or_handler_behind(monkeypatch):
    """A Ctrl-C landing while the command put the signal handlers back (SIGTERM's first,
    SIGINT's last) ran losscmp's own: it left its stop recorded and the rest of the
    handlers in place, so a later run in this process (the Python API, a test) stopped at
    its first wait. Held back meanwhile, it reaches Python's own handler, just after."""
    from losscmp import errors
    from losscmp.cli import _terminating_signals_as_interrupt

    put_back = signal.signal

    def ctrl_c_while_putting_back(signum, handler):
        if handler is not errors.stop_on_signal:
            signal.raise_signal(signal.SIGINT)
        return put_back(signum, handler)

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt), _terminating_signals_as_interrupt():
        monkeypatch.setattr(signal, "signal", ctrl_c_while_putting_back)
    monkeypatch.undo()
    assert errors._stop_signal is None
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_a_command_in_a_programs_thread_leaves_the_main_threads_stop_alone(tmp_path):
    """A program runs losscmp in a thread while the main thread's command has recorded a
    Ctrl-C (errors.stop_on_signal): the thread's command, as it began and ended, forgot
    that stop, and the main command, whose KeyboardInterrupt Python had dropped, trained
    on. Nor is the thread's command stopped by a Ctrl-C that was not its own."""
    from losscmp import errors
    from losscmp.cli import app

    previous = signal.signal(signal.SIGINT, errors.stop_on_signal)
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the main thread's command's Ctrl-C
        seen: dict[str, object] = {}

        def command_in_a_thread() -> None:
            try:
                errors.raise_if_stopped()
            except KeyboardInterrupt:
                seen["stopped"] = True
            # refused in its body: the command began (its signal handling) and ended
            args = ["run", "--epochs", "zero", "--out", str(tmp_path)]
            seen["status"] = app(args, prog_name="losscmp", standalone_mode=False)

        thread = threading.Thread(target=command_in_a_thread)
        thread.start()
        thread.join()
        assert seen == {"status": 2}
        with pytest.raises(KeyboardInterrupt):
            errors.raise_if_stopped()
    finally:
        signal.signal(signal.SIGINT, previous)
        errors.forget_stop()
    assert errors._stop_signal is None


def test_a_full_disk_mid_run_gives_the_command_that_finishes_it(cli, tmp_path, monkeypatch):
    """A trial file that cannot be written (a full disk) ends the run with one line: it
    said 'the same command plus --resume DIR' finishes it; it now gives that command."""
    import errno

    from losscmp.results import RunStore

    def full_disk(store, record, **kwargs) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(store.run_dir / "x.json"))

    monkeypatch.setattr(RunStore, "write_trial", full_disk)
    args = ["--config", SMOKE, "--losses", "dice", "--epochs", "1", "--out", tmp_path]
    result = cli("run", *args)
    assert result.exit_code == 2
    (run_dir,) = tmp_path.iterdir()
    command = shlex.join(["losscmp", "run", *map(str, args), "--resume", str(run_dir)])
    assert result.stderr.splitlines()[-1] == (
        f"losscmp: error: {run_dir / 'x.json'}: No space left on device; the trials finished "
        f"before it are saved in {run_dir}; once it can be written, finish the run with: "
        f"{command}"
    )


def test_ctrl_c_while_the_table_prints_says_the_run_is_complete(cli, tmp_path, monkeypatch):
    import losscmp.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(losscmp.cli, "_print_report", interrupted)
    out = tmp_path / "my runs"  # a space: the command to paste must quote it
    result = cli("run", "--config", SMOKE, "--epochs", "1", "--losses", "dice", "--out", out)
    assert result.exit_code == 130
    (run_dir,) = out.iterdir()
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith(f"losscmp: interrupted; every trial is saved in {run_dir}")
    assert f'; losscmp report "{run_dir}" prints the table, and this writes' in last_line
    assert len(list((run_dir / "trials").glob("*.json"))) == 1


def test_run_help_shows_the_real_defaults(cli, monkeypatch):
    """The defaults are in the help text (the options default to None, so that a config
    file can set them); Rich read '[default: 8]' as markup and showed nothing."""
    from losscmp.config import RunConfig

    monkeypatch.setenv("COLUMNS", "200")
    text = " ".join(cli("run", "--help").output.replace("│", " ").split())  # wrapped in a box
    defaults = RunConfig()
    for option, value in [
        ("Training epochs per trial.", defaults.epochs),
        ("Batch size.", defaults.batch_size),
        ("Square image side, a multiple of 32.", defaults.image_size),
        ("Trials per loss, each with its own seed.", defaults.seeds),
        ("First seed.", defaults.seed),
        ("AdamW learning rate.", defaults.lr),
        ("Data loader processes per trial process.", defaults.num_workers),
        ("auto, cpu, cuda or mps.", defaults.device),
        ("Parent folder of run folders.", defaults.out),
        ("patterns ('*dice*').", ",".join(defaults.losses)),
        ("Worker processes per GPU when --jobs is not given.", defaults.trials_per_gpu),
        ("'imagenet' to start from pretrained weights.", "none"),
        (  # Ray keeps twice the tasks that fit in flight (executors.ray.InFlight), not all
            "tasks in flight with ray.",
            "1; CUDA: --trials-per-gpu x GPUs; ray: twice what the cluster fits",
        ),
    ]:
        assert f"{option} [default: {value}]" in text, option


@pytest.mark.slow
def test_a_runs_log_says_the_time_left_after_each_trial(cli, tmp_path, monkeypatch):
    """The time left is measured on this run's trials, on the clock the display is given:
    ten seconds a tick, one tick when a trial starts, ends an epoch or ends."""
    import functools
    import itertools

    from losscmp import console

    ticks = itertools.count(0, 10)
    clocked = functools.partial(console.TrainingProgress, clock=lambda: float(next(ticks)))
    monkeypatch.setattr(console, "TrainingProgress", clocked)
    result = cli("run", "--config", SMOKE, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    ended = [line for line in result.stderr.splitlines() if line.startswith("finished:")]
    # dice: started at 0 s, epochs ended at 10 and 20 s: 10 s an epoch; the first trial's
    # start and end are no measure: 2 trials of 20 s left, rough ('~'). focal: 10 s from
    # its last epoch end to its end: tversky's 20 s and 10 s.
    assert ended == [
        "finished: dice · seed 0 (1/3 trials, ~0:00:40 left)",
        "finished: focal · seed 0 (2/3 trials, 0:00:30 left)",
        "finished: tversky · seed 0 (3/3 trials)",
    ]


def test_an_extra_is_installed_by_what_it_requires_not_by_the_package_name(monkeypatch):
    """From a checkout, pip install 'losscmp[ray]' would fetch another losscmp."""
    from importlib import metadata

    from losscmp.errors import install_hint

    try:
        metadata.requires("losscmp")
    except metadata.PackageNotFoundError:
        pytest.skip("losscmp is not installed here (run from its source tree): no metadata")
    assert install_hint("ray") == "pip install 'ray>=2.10'"
    assert install_hint("mlflow") == "pip install 'mlflow>=3.9'"

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    assert install_hint("ray") == "pip install -e '.[ray]' in the losscmp checkout"


def test_a_finished_runs_dry_run_says_it_has_nothing_to_run(cli, tmp_path):
    """Every trial done: it said 'jobs 1 (2 set: only 1 to run)' under '0 of 1 planned
    trials still to train'."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), config={"jobs": 2})
    result = cli("run", "--resume", run_dir, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "jobs 1 (2 set: nothing to run)" in _plan_line(result.output)


# Windows, as far as losscmp meets it before anything else: no fcntl, no SIGHUP.
WITHOUT_FCNTL_AND_SIGHUP = """
import signal, sys

sys.modules["fcntl"] = None  # 'import fcntl' raises ImportError
del signal.SIGHUP
"""


@pytest.mark.parametrize("args", [["--help"], ["losses"], ["run", "--epochs", "1"]])
def test_a_platform_without_fcntl_and_sighup_is_told_in_one_line(tmp_path, args):
    """On Windows `losscmp --help` was an AttributeError traceback (signal.SIGHUP, named
    at import) or, past it, ModuleNotFoundError for fcntl."""
    (tmp_path / "sitecustomize.py").write_text(WITHOUT_FCNTL_AND_SIGHUP)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "losscmp", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("losscmp: error: losscmp runs on Linux and macOS (on Windows, in WSL)\n")
