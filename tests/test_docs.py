"""docs/architecture.md's module map names every module of the package, and only those;
the README and the demo's config agree on how long the demo takes; the docs' links reach
their targets; the README's command synopsis and `losscmp run` table match the CLI,
and its loss counts the registry."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "losscmp"


def module_map() -> dict[str, str]:
    """The map's entries: 'cli.py' or 'data/' -> the entry's text (its continued lines too)."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = doc.split("```\nlosscmp/\n", 1)[1].split("```", 1)[0]
    entries = re.split(r"\n(?=  \S)", "\n" + block.rstrip())
    return {entry.split()[0]: entry for entry in entries if entry.strip()}


def test_the_module_map_names_every_module():
    entries = module_map()
    unnamed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            named = parts[0] in entries
        else:
            entry = entries.get(f"{parts[0]}/", "")
            named = parts[1] == "__init__.py" or re.search(rf"\b{re.escape(parts[1])}", entry)
        if not named:
            unnamed.append("/".join(parts))
    assert unnamed == []


def test_every_module_the_map_names_exists():
    for name in module_map():
        assert (PACKAGE / name).exists(), name


def test_the_readme_and_the_demo_config_give_one_demo_time():
    """configs/synthetic.yaml said about 50 seconds, the README about 45."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    config = (ROOT / "configs" / "synthetic.yaml").read_text(encoding="utf-8")
    (in_readme,) = re.findall(r"the whole command takes about (\d+) seconds", readme)
    (in_config,) = re.findall(r"About (\d+) seconds", config)
    assert in_readme == in_config


DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
]


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_reaches_a_file_and_heading():
    broken = []
    for doc in DOCS:
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = doc.parent / path if path else doc
            if not target.exists():
                broken.append(f"{doc.name}: {link}")
            elif anchor:
                lines = target.read_text(encoding="utf-8").splitlines()
                anchors = {heading_anchor(line.lstrip("#")) for line in lines if line[:1] == "#"}
                if anchor not in anchors:
                    broken.append(f"{doc.name}: {link}")
    assert broken == []


def cli_options() -> dict[str, set[str]]:
    """Each command's options as the CLI defines them ('run': {'--losses', '-j', ...})."""
    import typer.main

    from losscmp.cli import app

    group = typer.main.get_command(app)
    commands = {name: command for name, command in group.commands.items()}
    for name, command in group.commands["datasets"].commands.items():
        commands[f"datasets {name}"] = command
    return {
        name: {opt for param in command.params for opt in param.opts if opt.startswith("-")}
        - {"--help"}
        for name, command in commands.items()
    }


def readme_synopsis() -> dict[str, set[str]]:
    """The options the README's 'Commands' block shows for each command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Commands\n\n```\n", 1)[1].split("```", 1)[0]
    shown: dict[str, set[str]] = {}
    command = ""
    for line in block.splitlines():
        if line.startswith("losscmp "):
            command = line.split()[1]
        for option in re.findall(r"(?<![\w-])(-[a-z]|--[a-z][a-z-]*)", line):
            if option == "--root":  # datasets [list [--root DIR] | download ...]
                shown.setdefault("datasets list", set()).add(option)
            elif option == "--data-dir" and command == "datasets":
                shown.setdefault("datasets download", set()).add(option)
            else:
                shown.setdefault(command, set()).add(option)
    return shown


def test_the_readme_synopsis_shows_each_command_s_options_and_only_those():
    options = cli_options()
    for command, shown in readme_synopsis().items():
        negated = {f"--no-{option[2:]}" for option in options[command]}
        assert shown - negated == options[command], command


def cli_metavars() -> dict[tuple[str, str], str | None]:
    """(command, option) -> the word its --help names the option's value with, for each
    option that takes a value (None where it names none)."""
    import typer.main

    from losscmp.cli import app

    group = typer.main.get_command(app)
    commands = {name: command for name, command in group.commands.items()}
    for name, command in group.commands["datasets"].commands.items():
        commands[f"datasets {name}"] = command
    return {
        (name, param.opts[-1]): param.metavar
        for name, command in commands.items()
        for param in command.params
        if param.param_type_name == "option" and not param.is_flag
    }


def readme_metavars() -> dict[tuple[str, str], str]:
    """(command, option) -> the word the README's 'Commands' block names its value with
    ('--out DIR'); options shown with their choices ('--fuse auto|on|off') left out."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Commands\n\n```\n", 1)[1].split("```", 1)[0]
    words: dict[tuple[str, str], str] = {}
    command = ""
    for line in block.splitlines():
        if line.startswith("losscmp "):
            command = line.split()[1]
        for option, word in re.findall(r"\[(?:-[a-z]/)?(--[a-z][a-z-]*) ([A-Z_]+)\]", line):
            if command == "datasets":  # datasets [list [--root DIR] | download ...]
                words[("datasets list", option)] = words[("datasets", option)] = word
                words[("datasets download", option)] = word
            else:
                words[(command, option)] = word
    return words


def test_help_names_option_values_with_the_readme_synopsis_words():
    """--help showed the Python type of most values ('--out <str>', '--resume <path>')
    beside '--epochs N': each option that takes a value names it with a word, the one the
    README's synopsis uses."""
    metavars = cli_metavars()
    unnamed = [key for key, word in metavars.items() if not (word and word.isupper())]
    assert unnamed == []
    readme = readme_metavars()
    assert len(readme) >= 20
    assert {key: metavars.get(key) for key in readme if key in metavars} == {
        key: word for key, word in readme.items() if key in metavars
    }


def readme_run_table() -> dict[str, str]:
    """The `losscmp run` table: each flag's row -> its default column."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### `losscmp run`\n\n", 1)[1]
    table = section.split("\n\n", 1)[0].splitlines()
    rows = {}
    for line in table[2:]:
        flags, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
        for flag in re.findall(r"-[a-z]|--[a-z][a-z-]*", flags):
            rows[flag] = default
    return rows


def test_the_readme_run_table_has_a_row_for_every_run_option():
    negated = {"--no-amp", "--no-dry-run"}  # Typer's other half of a switch
    assert set(readme_run_table()) - negated == cli_options()["run"] - negated


def test_the_readme_run_table_gives_the_real_defaults():
    from losscmp.config import RunConfig

    defaults = RunConfig()
    rows = readme_run_table()
    written = {"—": None, "none": None, "on": True}
    checked = 0
    for flag, default in rows.items():
        field = flag.removeprefix("--").split("/")[0].replace("-", "_")
        if flag == "--seeds":  # the row of --seeds / --seed: `1 / 0`
            default = default.split("/")[0]
        elif flag == "--seed":
            default = default.split("/")[1]
        text = default.strip().strip("`")
        if not hasattr(defaults, field) or not re.fullmatch(r"[\w.,—-]+", text):
            continue  # a default that depends on the machine, said in words
        value = getattr(defaults, field)
        expected = written.get(text, text)
        if isinstance(value, list):
            value = ",".join(value)
        assert expected == value or (text[:1].isdigit() and float(text) == value), flag
        checked += 1
    assert checked >= 15


def test_the_readme_counts_the_losses_the_registry_has():
    from losscmp.losses import LOSS_REGISTRY

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    modes = {
        mode: [e for e in LOSS_REGISTRY if mode in e.modes] for mode in ("binary", "multiclass")
    }
    assert f"{len(list(LOSS_REGISTRY))} losses from the literature" in readme
    assert f"{len(modes['binary'])} binary, {len(modes['multiclass'])} multiclass" in readme


# Options of other programs the docs show beside losscmp's: `mlflow ui`, `docker run`,
# `ray start`, and `--help`, which every command has.
OTHER_PROGRAMS_OPTIONS = {"--backend-store-uri", "--shm-size", "--head", "--help"}


def test_every_option_the_docs_name_is_one_losscmp_has():
    """A flag renamed or removed in the CLI left behind in the prose of the README or
    docs/ (a user copying `--flag` gets 'No such option'); benchmark scripts' own flags
    are checked against their scripts below."""
    import typer.main

    from losscmp.cli import app

    commands = list(typer.main.get_command(app).commands.values())
    commands += list(typer.main.get_command(app).commands["datasets"].commands.values())
    known = {
        option
        for command in commands
        for param in command.params
        for option in (*param.opts, *param.secondary_opts)
    }
    unknown = []
    for doc in DOCS[:-1]:  # benchmarks/README.md: its scripts' flags, checked below
        text = re.sub(r"benchmarks/\w+\.py[^\n`]*", "", doc.read_text(encoding="utf-8"))
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
            if option not in known | OTHER_PROGRAMS_OPTIONS:
                unknown.append(f"{doc.name}: {option}")
    assert unknown == []


def test_every_benchmark_command_the_docs_show_takes_its_flags():
    """`python benchmarks/trial.py --repeats 1 --epochs 2`: each flag on a benchmark
    script's command line in the docs is one that script defines."""
    unknown, checked = [], 0
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for script, arguments in re.findall(r"benchmarks/(\w+)\.py((?:[^\n`#]|\\\n)*)", text):
            source = (ROOT / "benchmarks" / f"{script}.py").read_text(encoding="utf-8")
            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", arguments):
                checked += 1
                if f'"{option}"' not in source:
                    unknown.append(f"{doc.name}: benchmarks/{script}.py {option}")
    assert unknown == []
    assert checked >= 40


def readme_dial() -> tuple[list[str], dict[str, list[str]], str]:
    """The README's imbalance-dial example: its column titles, each loss's cells as
    printed ('*0.517'), and its caption on one line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Which loss for rare, small structures?", 1)[1]
    block = section.split("```\n", 2)[1]
    lines = [line for line in block.splitlines() if line.strip()]
    header = lines.index(next(line for line in lines if line.strip().startswith("loss ")))
    columns = re.findall(r"fg [\d.]+", lines[header])
    cells, caption = {}, []
    for line in lines[header + 2 :]:
        words = line.split()
        if len(words) == len(columns) + 1 and not caption:
            cells[words[0]] = words[1:]
        else:
            caption.append(line.strip())
    return columns, cells, " ".join(caption)


def test_the_readme_imbalance_dial_is_what_the_terminal_prints_for_its_numbers():
    """The README's one-seed dial said 'mean ± sd over seeds' after its caption had become
    'one seed, no sd' for one-seed runs: its numbers, rendered now, give its text."""
    import pandas as pd

    from losscmp.render.terminal import BOLD_BEST, PLAIN_BEST, render_imbalance_table

    columns, cells, caption = readme_dial()
    rows = []
    for loss, texts in cells.items():
        for column, text in zip(columns, texts, strict=True):
            fraction = float(column.removeprefix("fg "))
            rows.append(
                {
                    "dataset": f"synthetic(fg_fraction={fraction:g})",
                    "loss": loss,
                    "fg_fraction": fraction,
                    "dial_group": "synthetic",
                    "score_mean": float(text.lstrip("*")),
                    "score_std": float("nan"),
                    "n_seeds": 1,
                    "headline_split": "test",
                    "lr_chosen": True,
                }
            )
    summary = pd.DataFrame(rows)
    summary["rank"] = summary.groupby("fg_fraction")["score_mean"].rank(ascending=False)
    grid = render_imbalance_table(summary)
    assert grid.columns == columns
    printed = {loss: [cell.plain for cell in texts] for loss, texts in grid.rows}
    for row, column in grid.best:
        loss = grid.rows[row][0]
        printed[loss][column] = "*" + printed[loss][column]
    assert printed == cells
    assert grid.caption.replace(BOLD_BEST, PLAIN_BEST) == caption


def test_every_name_the_docs_python_imports_from_losscmp_exists():
    """A notebook copies these lines: each `from losscmp... import name` and each
    `losscmp.name(` of the README's and the architecture's Python blocks is there."""
    import importlib

    import losscmp

    blocks = [
        block
        for doc in (ROOT / "README.md", ROOT / "docs" / "architecture.md")
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    ]
    code = "\n".join(blocks)
    imported = re.findall(r"^from (losscmp[\w.]*) import (.+)$", code, re.M)
    missing = [
        f"{module}.{name.strip()}"
        for module, names in imported
        for name in names.split(",")
        if not hasattr(importlib.import_module(module), name.strip())
    ]
    missing += [
        name for name in re.findall(r"\blosscmp\.(\w+)\(", code) if name not in dir(losscmp)
    ]
    assert imported and missing == []


def summary_csv_names() -> list[str]:
    """The column names the README's 'summary.csv columns' table documents, as patterns:
    `<m>` any of the metrics it lists, `<class>` a class name, `x_mean/_std` both."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### summary.csv columns", 1)[1].split("\n## ", 1)[0]
    metrics = "|".join(re.findall(r"`(\w+)`", section.split("| column |", 1)[0]))
    names = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        for name in re.findall(r"`([\w<>/]+)`", line):
            name = name.replace("<m>", f"({metrics})").replace("<class>", r"\w+")
            stem, _, tail = name.partition("_mean/")
            names += [f"{stem}_mean", f"{stem}{tail}"] if tail else [name]
    return names


def test_the_readme_documents_every_summary_csv_column(tmp_path):
    """summary.csv has 72 columns (more for a multiclass run); the README named seven of
    them and an ellipsis."""
    from run_fixtures import write_run

    from losscmp.summary import build_report

    binary = write_run(tmp_path / "binary", lrs=[1e-3, 1e-2])
    multiclass = write_run(tmp_path / "classes", class_names=("background", "pet", "border"))
    columns = set()
    for run_dir in (binary, multiclass):
        columns |= set(build_report([run_dir]).summary.columns)
    patterns = summary_csv_names()
    undocumented = [c for c in columns if not any(re.fullmatch(p, c) for p in patterns)]
    assert not undocumented
    assert len(columns) > 72
