"""docs/architecture.md's module map names every module of the package, and only those;
the README and the demo's config agree on how long the demo takes; the docs' links reach
their targets; the README's command synopsis and `losscmp run` table match the CLI,
and its loss counts the registry; every file, name and constant that docs/architecture.md
and docs/ray.md quote is the code's."""

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
    negated = {"--no-amp"}  # Typer's other half of a switch
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
# `ray start`, `pip install --no-deps`, and `--help`, which every command has.
OTHER_PROGRAMS_OPTIONS = {"--backend-store-uri", "--shm-size", "--head", "--no-deps", "--help"}


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


ARCHITECTURE_DOCS = (ROOT / "docs" / "architecture.md", ROOT / "docs" / "ray.md")


def quoted_spans(doc: Path) -> list[str]:
    """The text of each `inline code` span of ``doc``."""
    return re.findall(r"`([^`\n]+)`", doc.read_text(encoding="utf-8"))


def test_every_python_file_the_docs_name_exists():
    """`losses/catalogue.py`, `tests/test_metrics.py`, `cells.py`: a module renamed or
    moved leaves its old path in the prose (the module map has its own test above)."""
    code_dirs = ("losscmp", "tests", "benchmarks")
    missing, checked = [], 0
    for doc in ARCHITECTURE_DOCS:
        for span in quoted_spans(doc):
            for path in re.findall(r"(?<![\w/.<-])((?:[\w-]+/)*[\w-]+\.py)\b", span):
                checked += 1
                if "/" in path:
                    found = (ROOT / path).exists() or (PACKAGE / path).exists()
                else:
                    found = any(any((ROOT / d).rglob(path)) for d in code_dirs)
                if not found:
                    missing.append(f"{doc.name}: {path}")
    assert missing == []
    assert checked >= 50


# Quoted names that are not losscmp's though their first part names one of its modules
# (Ray's and MLflow's API, MLflow tags), and torch's operators.
OTHER_PROGRAMS_NAMES = {
    "ray.cancel",
    "ray.get",
    "mlflow.parentRunId",
    "losscmp.resumed_with",
    "max_pool2d",
}


def losscmp_modules() -> dict[str, list[object]]:
    """Every module of the package by each name the docs call it: 'cells', 'render.cells',
    'losscmp.render.cells'."""
    import importlib

    modules: dict[str, list[object]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = [p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__"]
        module = importlib.import_module(".".join(parts))
        for start in range(len(parts)):
            modules.setdefault(".".join(parts[start:]), []).append(module)
    return modules


def has_attribute(owner: object, name: str) -> bool:
    """``owner.name`` exists: an attribute, a dataclass field, or one its methods set."""
    import inspect

    if hasattr(owner, name):
        return True
    if not inspect.isclass(owner):
        return False
    for cls in owner.__mro__:
        fields = {*getattr(cls, "__annotations__", {}), *getattr(cls, "__dataclass_fields__", {})}
        if name in fields:
            return True
        try:
            if re.search(rf"self\.{name}\b\s*[:=]", inspect.getsource(cls)):
                return True
        except (OSError, TypeError):
            continue
    return False


def resolves(name: str, modules: dict[str, list[object]], classes: dict[str, list[object]]):
    """Whether dotted ``name`` ('runner.prepare', 'RunStore.lock') is there; None where its
    first part is neither a losscmp module nor a losscmp class (torch.x, np.ndarray)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        owners = modules.get(".".join(parts[:cut]))
        if owners:
            rest = parts[cut:]
            break
    else:
        owners, rest = classes.get(parts[0]), parts[1:]
        if not owners:
            return None
    for owner in owners:
        found = True
        for part in rest:
            if not has_attribute(owner, part):
                found = False
                break
            owner = getattr(owner, part, None)
            if owner is None:  # a field without a class default: nothing to look into
                break
        if found:
            return True
    return False


def test_every_name_the_architecture_docs_quote_exists():
    """A function, class, constant or field renamed or removed in the code left behind in
    the contract: each dotted `module.name` or `Class.member` quoted in docs/architecture.md
    and docs/ray.md resolves in the package, and each other quoted identifier that is
    visibly code (snake_case, CamelCase, UPPER_CASE) is a word of the package, its tests
    or its benchmarks."""
    import inspect

    modules = losscmp_modules()
    classes: dict[str, list[object]] = {}
    for module in {id(m): m for ms in modules.values() for m in ms}.values():
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__.startswith("losscmp"):
                classes.setdefault(value.__name__, []).append(value)
    code = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in ("losscmp", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
    )
    missing, checked = [], 0
    for doc in ARCHITECTURE_DOCS:
        for span in quoted_spans(doc):
            command_line = span.startswith(("losscmp ", "-"))  # its UPPER words: placeholders
            span = re.sub(r"[\w.]*<[^>]*>[\w.]*", " ", span)  # load_<name>, best_<m>_mean
            # Paths (checked above) and file names: not names of the code.
            span = re.sub(r"\S*/\S*|[\w.-]+\.(?:py|md|csv|json|html|npz|png|lock)\b", " ", span)
            for name in re.findall(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", span):
                if name in OTHER_PROGRAMS_NAMES or name.endswith("_"):
                    continue
                if "." in name:
                    found = resolves(name, modules, classes)
                elif command_line and name.isupper():
                    found = None
                elif re.search(r"_|[a-z][A-Z]|^[A-Z]{2,}", name.strip("_")):
                    found = re.search(rf"\b{re.escape(name)}\b", code) is not None
                else:
                    found = None  # a plain word: 'auto', 'dice', 'binary'
                if found is not None:
                    checked += 1
                    if not found:
                        missing.append(f"{doc.name}: {name}")
    assert missing == []
    assert checked >= 300


def quoted_constants() -> list[tuple[str, str, float]]:
    """(doc, what it says, the value the code has) for each constant the docs quote."""
    from losscmp import metrics, results, worker
    from losscmp.executors import base, ray

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (ray_requirement,) = re.findall(r'^ray = \["(ray[^"]*)"\]', pyproject, re.M)
    every = round(1 / worker.STEP_EVENT_INTERVAL_S)
    return [
        ("architecture.md", "`schema_version` (%d;", results.SCHEMA_VERSION),
        ("architecture.md", "`TABLES_SHARE`, %d %%", results.TABLES_SHARE * 100),
        ("architecture.md", "%s minutes old", NUMBER_WORDS[results.ABANDONED_BUILD_AGE_S // 60]),
        ("architecture.md", "`STALL_LIMIT_S`, %d min", base.STALL_LIMIT_S / 60),
        ("architecture.md", "-> Tensor (%d, 3)", metrics.HISTOGRAM_BINS),
        ("architecture.md", "`expected_calibration_error` (%d bins)", metrics.ECE_BINS),
        ("architecture.md", "`THRESHOLDS` = %s … %s", metrics.THRESHOLDS[::98]),
        ("architecture.md", "at most %s a second per trial", NUMBER_WORDS[every]),
        ("ray.md", "refused within %d seconds", ray.PROBE_TIMEOUT_S),
        ("ray.md", "counted again every %d s", ray.ROOM_CHECK_S),
        ("ray.md", "A task silent for %d minutes per model", base.STALL_LIMIT_S / 60),
        ("ray.md", "steps at most %s a second a trial", NUMBER_WORDS[every]),
        ("ray.md", "needs Ray: pip install '%s'", ray_requirement),
    ]


def _plain(value):
    """30.0 as 30 (a phrase's '%d' or '%s'); words and fractions as they are."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


NUMBER_WORDS = {5: "five", 10: "ten", 15: "fifteen", 20: "twenty", 30: "thirty"}


def test_the_architecture_docs_calls_name_every_parameter_in_order():
    """docs/architecture.md wrote `runner.prepare(plan, resuming=False, done=(),
    dry_run=False)` and `render.terminal.render(report)` after each had gained a parameter:
    each `module.function(...)` line of its code blocks names the function's parameters,
    in order (a bare `*` aside)."""
    import importlib
    import inspect

    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    call = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*)\.([a-z_]+)\(((?:[^()]|\(\))*)\)", re.M)
    wrong, checked = [], 0
    for block in re.findall(r"```[a-z]*\n(.*?)```", doc, re.S):
        for module, name, arguments in call.findall(block):
            function = getattr(importlib.import_module(f"losscmp.{module}"), name)
            written = [a.split("=")[0].strip() for a in arguments.split(",")]
            written = [a for a in written if a not in ("", "*")]
            if written != list(inspect.signature(function).parameters):
                wrong.append(f"{module}.{name}({', '.join(written)})")
            checked += 1
    assert wrong == []
    assert checked >= 7


def test_the_constants_the_docs_quote_are_the_code_s():
    """The docs quote the stall limit, the schema version, the Ray probe's timeout...:
    each phrase, with the code's value put in, is in its doc."""
    texts = {
        name: " ".join((ROOT / "docs" / name).read_text(encoding="utf-8").split())
        for name in ("architecture.md", "ray.md")
    }
    absent = []
    for doc, phrase, value in quoted_constants():
        values = value if isinstance(value, tuple) else (value,)
        text = phrase % tuple(_plain(v) for v in values)
        if text not in texts[doc]:
            absent.append(f"{doc}: {text}")
    assert absent == []


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
