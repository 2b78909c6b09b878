"""The run configuration: defaults < YAML file < command-line flags.

Kept free of torch so the CLI can parse and validate without importing it.
Loss and dataset names are checked against their registries later, in the
runner, before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import shlex
import typing
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from losscmp.errors import (
    ConfigError,
    LosscmpError,
    ParameterError,
    SpecError,
    choice_named,
    suggest,
)
from losscmp.registry import SCIENTIFIC_TEXT, coerce, describe_type
from losscmp.spec import (
    Spec,
    as_spec,
    comma_hint,
    selector_name,
    split_spec_list,
    split_top_level,
)

DEVICES = ("auto", "cpu", "cuda", "mps")
FUSE_MODES = ("auto", "on", "off")  # auto: fuse the losses of a seed (and rate) on CUDA only
MAX_FUSED_LOSSES = 16  # losses per fused model: bounds the stacked activations' memory
# The cap of every losscmp before run.json's execution.fused_group_size recorded it: such a
# run resumes in its own groups (under vmap a copy's rounding depends on its group).
UNRECORDED_FUSED_GROUP_SIZE = 16
# Devices where AdamW runs torch's fused kernel: one pass over all parameters, 2.5x faster
# than the default per-parameter loop on the CPU, a launch-bound step's saving on CUDA.
FUSED_ADAMW_DEVICES = ("cpu", "cuda")
# Devices where a fused model runs its copies one after another, each in channels_last, as a
# model trained alone (fused.SeparateCopies: the same numbers), rather than by vmap: on the
# CPU vmap's convolution, BatchNorm and pooling rules move every activation between
# (K·B, C) and (B, K·C) layouts and cannot run channels_last, 1.7x slower (benchmarks/README).
PER_COPY_FUSED_DEVICES = ("cpu",)


def separate_fused_copies(per_copy: bool, own_weights: bool, device_type: str) -> bool:
    """Whether a fused model's copies are models of their own (fused.SeparateCopies), each
    rounding exactly as it would alone: on PER_COPY_FUSED_DEVICES, in runs recorded with
    ``fused_per_copy`` and ``fused_own_weights`` (older runs resume as they started)."""
    return bool(per_copy and own_weights) and device_type in PER_COPY_FUSED_DEVICES


DEFAULT_LOSSES = "dice,focal,tversky"
COMMAND_LINE_ONLY = ("config", "resume", "dry_run", "estimate")  # how to run, not what: not in YAML
OPTIONAL_NAMES = ("encoder_weights", "tracking")  # fields where 'none' means None
NOT_OPTION = {"option": False}  # metadata of a RunConfig field that is no option


class Origin(IntEnum):
    """Where an option's value was set, least specific first: a flag overrides a config
    file, which overrides a resumed run's run.json, which overrides the default."""

    DEFAULT = 0
    RESUMED_RUN = 1
    CONFIG_FILE = 2
    FLAG = 3


@dataclass(frozen=True)
class Origins:
    """Where each option's value came from (a flag, the config file, a resumed run's
    run.json), so that a message names it as the user gave it; defaults go by their flag."""

    sources: dict[str, str] = field(default_factory=dict)
    typed: dict[str, str] = field(default_factory=dict)  # as written: a flag's, a file's

    def source(self, key: str) -> str:
        return self.sources.get(key, flag_name(key))

    def origin(self, key: str) -> Origin:
        source = self.sources.get(key)
        if source is None:
            return Origin.DEFAULT
        if source == BASE_SOURCE:
            return Origin.RESUMED_RUN
        return Origin.FLAG if source == flag_name(key) else Origin.CONFIG_FILE

    def given_now(self, key: str) -> bool:
        """Whether ``key`` was set by this command (a flag or its config file), not left at
        its default or taken from a resumed run's run.json (its notes and checks were made
        when that run started)."""
        return self.origin(key) >= Origin.CONFIG_FILE

    def name(self, key: str) -> str:
        """``--epochs``, or ``config file X: 'epochs'``: the subject of a message."""
        source = self.source(key)
        return source if source == flag_name(key) else f"{source}: '{key}'"

    def option(self, key: str) -> str:
        """``--epochs``, or ``'epochs'`` where it came from a file: a mention mid-sentence."""
        return flag_name(key) if self.source(key) == flag_name(key) else f"'{key}'"

    def within(self, *keys: str) -> str:
        """``config file X: `` where one of ``keys`` came from elsewhere than a flag: the
        start of a message that names several options with ``option``."""
        for key in keys:
            if self.source(key) == flag_name(key):
                continue
            if self.origin(key) is Origin.RESUMED_RUN and any(map(self.given_now, keys)):
                # run.json is sound: what clashes with it is an option given now
                return f"{RESUMED_CONFIG}: "
            return f"{self.source(key)}: "
        return ""

    def given(self, key: str, value: Any) -> str:
        """The option and its value as the user gave them, the subject of a note:
        ``--jobs 4``, ``config file X: 'jobs' 4``, or a resumed run's own: ``the run's
        'jobs' 4`` (a note on it is no error in run.json, as ``name`` would call it)."""
        source, shown = self.source(key), self.shown(key, value)
        if source == flag_name(key):
            return f"{source} {shown}"
        where = "the run's" if self.origin(key) is Origin.RESUMED_RUN else f"{source}:"
        return f"{where} '{key}' {shown}"

    def shown(self, key: str, value: Any) -> str:
        """The value as the user typed it (``1e400`` rather than ``inf``)."""
        return self.typed.get(key, str(value))

    def file_sources(self, stored: dict[str, str] | None = None) -> dict[str, str]:
        """The options a config file gave, each with its source (``config file X``): what
        run.json keeps (``option_sources``), so that a report names them as they were given.
        ``stored``: a resumed run's own, kept for the options taken from its run.json."""
        kept = {
            key: source
            for key, source in (stored or {}).items()
            if self.origin(key) is Origin.RESUMED_RUN
        }
        given = {
            key: source
            for key, source in self.sources.items()
            if source.startswith(f"{FILE_SOURCE} ")
        }
        return kept | given


@dataclass
class RunConfig:
    """Everything that decides a run's numbers (and a few things that don't)."""

    losses: list[str] = field(default_factory=lambda: DEFAULT_LOSSES.split(","))
    dataset: str = "synthetic"
    data_dir: str | None = None
    fg_fraction: list[float] | None = None
    epochs: int = 8
    batch_size: int = 16
    image_size: int = 64
    seeds: int = 1
    seed: int = 0
    lr: float = 3e-3
    # Learning rates each loss trains at (every loss x rate x seed); each loss is reported at
    # the rate with the best validation score. None: --lr alone.
    lr_grid: list[float] | None = None
    weight_decay: float = 1e-4
    model: str = "auto"
    encoder_weights: str | None = None
    device: str = "auto"
    amp: bool = True
    limit: int | None = None
    num_workers: int = 0
    out: str = "results"
    executor: str = "local"
    jobs: int | None = None  # None: 1 on the CPU, trials_per_gpu x GPUs on CUDA
    threads: int | None = None  # torch threads per job; None: the cores divided among jobs
    fuse: str = "auto"
    trials_per_gpu: int = 1
    ray_address: str | None = None
    tracking: str | None = None  # an experiment tracker to mirror the run into (mlflow)
    # Where each value came from (set by build_config), for a check made later (the trial
    # limit, once 'all' is expanded) to name an option as the user gave it. Not an option:
    # left out of FIELD_NAMES, run.json, equality and a resume's comparison; replace() keeps it.
    origins: Origins | None = field(default=None, compare=False, repr=False, metadata=NOT_OPTION)

    @property
    def dataset_spec(self) -> Spec:
        return as_spec(self.dataset)

    def dataset_specs(self) -> list[Spec]:
        """One dataset spec per foreground fraction of the imbalance dial (or just one)."""
        base = self.dataset_spec
        if not self.fg_fraction:
            return [base]
        return [Spec(base.name, {**base.params, "fg_fraction": f}) for f in self.fg_fraction]

    def to_dict(self) -> dict[str, Any]:
        """The options (run.json's ``config``)."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key in FIELD_NAMES}

    # Fields that change no number: a resumed run may differ in these.
    # Fusion and threads change floating-point order: a resumed run keeps its own (run.json).
    NON_RESULT_FIELDS = frozenset(
        {
            "out",
            "num_workers",
            "device",
            "data_dir",
            "executor",
            "jobs",
            "trials_per_gpu",
            "ray_address",
            "tracking",
        }
    )


FIELD_NAMES = [f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("option", True)]
FIELD_HINTS = {key: typing.get_type_hints(RunConfig)[key] for key in FIELD_NAMES}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a flat mapping of RunConfig fields."""
    import yaml

    if not str(path).strip():
        raise ConfigError("--config is empty; give a YAML file")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"config file {path} is a folder; give a YAML file{_run_folder_hint(path)}"
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        content = yaml.load(path.read_text(), Loader=_config_loader())  # noqa: S506 (safe)
    except DuplicateOption as error:
        raise ConfigError(f"config file {path}: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a UTF-8 text file") from None
    except OSError as error:
        reason = error.strerror or error
        raise ConfigError(f"config file {path} cannot be read ({reason})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"config file {path} is not valid YAML{where}{_yaml_hint(error)}"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        kind = "a list" if isinstance(content, list) else f"the value {content!r}"
        raise ConfigError(f"config file {path} must hold a mapping of options, not {kind}")
    if set(content) >= RUN_RECORD_KEYS:
        return _run_record_options(path, content)
    options: dict[str, Any] = {}
    for written, value in content.items():
        key = str(written).replace("-", "_")
        if key in COMMAND_LINE_ONLY:
            raise ConfigError(
                f"config file {path}: '{key}' is a command-line option only "
                f"(--{key.replace('_', '-')})"
            )
        if key not in FIELD_NAMES:
            raise ConfigError(
                f"config file {path}: unknown option '{key}'{suggest(key, FIELD_NAMES)}"
            )
        if key in options:
            raise ConfigError(
                f"config file {path}: '{key}' is given twice (as written and with dashes)"
            )
        options[key] = value
    return options


RUN_RECORD_KEYS = frozenset({"schema_version", "config"})  # a run.json: its config reruns it


def _run_folder_hint(path: Path) -> str:
    """A run folder given to --config: its run.json runs the same trials again."""
    from losscmp.results import RUN_FILE  # the run folder's owner names its files

    record = path / RUN_FILE
    if not record.is_file():
        return ""
    return f" (to run that run again: --config {record}; to finish it: --resume {path})"


def _run_record_options(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A run's run.json given as a config file: the options that run resolved to, so that
    ``--config RUN/run.json`` plans its trials again (into a new run folder) with the same
    numbers: its losses as ``all`` and patterns expanded to, its device and thread count as
    they resolved (both change the numbers), less what the run replaced or did not read
    (its --lr beside the grid that replaced it, a file's data_dir under a flag's dataset
    that reads none), which a hand-written file giving both would be refused for."""
    stored = record.get("config")
    if not isinstance(stored, dict) or not set(stored) <= set(FIELD_NAMES):
        raise ConfigError(f"config file {path} is a run's record without a valid config")
    options = with_device_as_started(stored, record)
    threads = (record.get("execution") or {}).get("threads")
    if options.get("threads") is None and isinstance(threads, int):
        options["threads"] = threads
    if options.get("lr_grid") is not None:
        options.pop("lr", None)
    if options.get("fg_fraction") is not None and isinstance(options.get("dataset"), str):
        dataset = as_spec(options["dataset"])
        options["dataset"] = _without_fraction(dataset).label  # the sweep's replaced it
    return {key: value for key, value in options.items() if _read_by_its_run(key, options)}


def with_device_as_started(options: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """A stored run's options (run.json's config) with ``device: auto`` as it resolved
    when the run started (run.json's device, ``cuda:0``: ``cuda``): its trials ran there,
    even where a GPU has since appeared, or Ray would decide differently."""
    started_on = str(meta.get("device") or "").split(":")[0]
    if options.get("device", "auto") == "auto" and started_on in DEVICES:
        return {**options, "device": started_on}
    return dict(options)


def _read_by_its_run(key: str, options: dict[str, Any]) -> bool:
    """Whether a stored option was read by the run: --ray-address by an executor that
    reads it (ray), a data_dir by a dataset that reads one (a file's left under a flag
    that chose otherwise was set aside); each asked of its entry's run_options, as
    _refuse_unread_options asks."""
    if key == "ray_address":
        from losscmp.executors import EXECUTORS, executor_class

        executor = options.get("executor")
        return executor in EXECUTORS and key in executor_class(executor).run_options
    if key == "data_dir" and isinstance(options.get("dataset"), str):
        from losscmp.data import DATASET_REGISTRY

        name = as_spec(options["dataset"]).name
        return name not in DATASET_REGISTRY or "data_dir" in DATASET_REGISTRY.get(name).run_options
    return True


def _without_fraction(spec: Spec) -> Spec:
    """``spec`` less its fg_fraction, which a sweep (--fg-fraction) replaces."""
    return Spec(
        spec.name, {key: value for key, value in spec.params.items() if key != "fg_fraction"}
    )


def _yaml_hint(error) -> str:
    """What to do about the mistakes PyYAML refuses most often in a hand-written file: a tab
    (unseen in an editor), a pattern left unquoted (``*dice*`` reads as an alias)."""
    mark, problem = getattr(error, "problem_mark", None), str(getattr(error, "problem", ""))
    if mark is not None and "'\\t'" in problem:
        return (
            f": a tab (column {mark.column + 1}), which YAML does not take as indentation or "
            "spacing; use spaces"
        )
    if getattr(error, "context", None) == "expected a single document in the stream":
        return ": a second document ('---') begins there; a config file is one mapping"
    alias = getattr(error, "context", None) == "while scanning an alias"
    if alias or problem.startswith("found undefined alias"):
        return ": a bare '*' starts a YAML alias; quote a pattern, as in losses: ['*dice*']"
    return ""


class DuplicateOption(Exception):
    pass


@functools.cache
def _config_loader():
    """PyYAML's safe loader, refusing a key given twice (YAML would keep the last)."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        def construct_document(self, node):
            """A text option's plain value as written: YAML reads 'out: 2024' as a number
            (refused as no text), 'out: 1.50' as 1.5 (another folder's name), 'out:
            2024-01-01' as a date and 'device: on' as true (refused as no text, not as no
            device)."""
            for key, value in node.value if isinstance(node, yaml.MappingNode) else ():
                option = str(key.value).replace("-", "_")
                read_as = NUMBER_TAGS + (TIMESTAMP_TAG,)
                read_as += () if option in BOOLEAN_CHOICES else (BOOL_TAG,)
                if option in TEXT_FIELDS and value.tag in read_as:
                    value.tag = "tag:yaml.org,2002:str"
            return super().construct_document(node)

        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=True) for key, _ in node.value]
            repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
            if repeated:
                raise DuplicateOption(f"'{repeated[0]}' is given twice")
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node):
            """A whole number as a flag reads it: YAML 1.1 reads 010 as 8 (octal), 1:30 as
            90 (base 60) and 0x10 as 16 (hexadecimal; 0b1010 binary), which --epochs
            refuses."""
            text = self.construct_scalar(node)
            if ":" in text or BASE_PREFIX.match(text):
                return text  # refused as text where a number is due
            if LEADING_ZERO.fullmatch(text.replace("_", "")):
                return int(text.replace("_", ""), 10)
            return super().construct_yaml_int(node)

        def construct_yaml_float(self, node):
            text = self.construct_scalar(node)
            return text if ":" in text else super().construct_yaml_float(node)

    ConfigLoader.add_constructor("tag:yaml.org,2002:int", ConfigLoader.construct_yaml_int)
    ConfigLoader.add_constructor("tag:yaml.org,2002:float", ConfigLoader.construct_yaml_float)
    return ConfigLoader


LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")  # YAML 1.1's octal; decimal in YAML 1.2
BASE_PREFIX = re.compile(r"[-+]?0[box]", re.IGNORECASE)  # 0b1010, 0x10: no flag's number
NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
BOOL_TAG = "tag:yaml.org,2002:bool"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"  # 2024-01-01, a date to YAML 1.1
BOOLEAN_CHOICES = ("fuse",)  # text options that read YAML's true and false (as on and off)
# The words YAML 1.1 reads as a boolean unquoted: a switch (amp) reads them quoted too, as
# 'amp: "on"' means what 'amp: on' and --amp do.
BOOLEAN_WORDS = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}
TEXT_FIELDS = frozenset(key for key, hint in FIELD_HINTS.items() if hint in (str, str | None))


# Where a resumed run's stored options come from, as a message names them.
BASE_SOURCE = "the resumed run's run.json is damaged: config"
RESUMED_CONFIG = "the resumed run's config"
FILE_SOURCE = "config file"  # + the file as given: where a config file's options come from


def build_config(
    file: str | Path | None = None, base: dict[str, Any] | None = None, **flags: Any
) -> RunConfig:
    """Merge defaults < ``base`` (a stored run's config) < the file < flags given (not None).

    ``flags`` are the options by their field names (``losses="dice,bce"``, ``epochs=2``),
    as a config file spells them; an unknown name raises ``ParameterError``.
    """
    _refuse_unknown_options(flags)
    options: dict[str, Any] = dict(base or {})
    sources = dict.fromkeys(options, BASE_SOURCE)
    from_file = load_yaml(file) if file is not None else {}
    # A file's number written as text (1e1, '8': YAML 1.1 reads both as text) is the number
    # its flag would read.
    options.update({key: _typed_number(key, value) for key, value in from_file.items()})
    sources.update(dict.fromkeys(from_file, f"{FILE_SOURCE} {file}"))
    given = {key: value for key, value in flags.items() if value is not None}
    options.update({key: _typed_number(key, value) for key, value in given.items()})
    sources.update({key: flag_name(key) for key in given})
    origins = Origins(sources, _typed(from_file, given))
    values = {}
    for key, value in options.items():
        try:
            values[key] = normalise(key, value, origins.name(key))
        except ParameterError:
            raise  # names the option already
        except LosscmpError as error:  # named after where the value came from
            raise type(error)(f"{origins.source(key)}: {error}") from None
    try:
        config = RunConfig(**values, origins=origins)
    except TypeError as error:
        raise ConfigError(f"options: {error}") from None
    return validate(config, origins)


def _typed(from_file: dict[str, Any], given: dict[str, Any]) -> dict[str, str]:
    """Each option's value as the user wrote it, for messages: a flag's text, or a config
    file's number or text (``weight_decay: -1`` is -1 there, not the -1.0 it reads as)."""
    written = {
        key: str(value).strip()
        for key, value in from_file.items()
        if isinstance(value, int | float | str) and not isinstance(value, bool)
    }
    for key, value in given.items():  # a flag overrides its file's value
        written.pop(key, None)
        if isinstance(value, str):
            written[key] = value.strip()
    return written


def _refuse_unknown_options(flags: dict[str, Any]) -> None:
    """A Python caller's misspelt option (``build_config(lossses=...)``) is named, not a
    KeyError deep in ``normalise``."""
    for key in flags:
        if key not in FIELD_NAMES:
            raise ParameterError(f"unknown option '{key}'{suggest(key, FIELD_NAMES)}")


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def rate_text(rate: float) -> str:
    """A rate as a refusal names it: as a column prints it ('0.001') where that reads back
    as the same number, else the shortest text that does ('0.0010000001'), so two rates
    that differ are never named alike."""
    short = f"{rate:g}"
    return short if float(short) == rate else repr(float(rate))


def _typed_number(key: str, value: Any) -> Any:
    """A numeric option's text (a flag's, a config file's 1e1 or '8') as the number it
    spells; other text is left for normalise to refuse in the words it uses for a config
    file's value."""
    if not (isinstance(value, str) and key in NUMERIC_FIELDS):
        return value
    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        # 1e400 overflows to inf: left as typed, so that a message shows what was typed
        overflowed = not math.isfinite(number) and "e" in value.lower().replace("inf", "")
        return value if overflowed else number
    return value


def normalise(key: str, value: Any, name: str | None = None) -> Any:
    """Bring a YAML or flag value to the field's type; list fields accept comma strings.
    ``name`` (default ``'key'``) is how a message names the option."""
    name = name or f"'{key}'"
    _refuse_no_value(key, value, name)
    if key == "losses":
        return _loss_labels(value, name)
    if key == "dataset":
        return as_spec(_written_numbers(value)).label
    if key in ("fg_fraction", "lr_grid"):
        if isinstance(value, str) and value.strip().lower() in ("none", "null"):
            return None  # --lr-grid none: no grid (over a config file's), as --jobs none is
        return _float_list(value, name)
    if key == "fuse" and isinstance(value, bool):
        return "on" if value else "off"  # YAML 1.1 reads an unquoted on/off as a boolean
    hint = FIELD_HINTS[key]
    if hint is bool and isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[value.strip().lower()]
    optional = key in OPTIONAL_NAMES or type(None) in typing.get_args(hint)
    if optional and isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
        return None  # e.g. --jobs none: the default, chosen for this machine
    try:
        return coerce(value, hint)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} must be {describe_type(hint)}, got {value!r}{_grid_hint(key, value)}"
            f"{_seed_list_hint(key, value, name)}"
            f"{_short_option_hint(key, value, name)}"
        ) from None


def _refuse_no_value(key: str, value: Any, name: str) -> None:
    """A config file's key left empty ('epochs:') or null, where the option has no 'none':
    YAML reads it as null, which the type check called 'got None'."""
    hint = FIELD_HINTS[key]
    if value is not None or key in OPTIONAL_NAMES or type(None) in typing.get_args(hint):
        return
    default = getattr(RunConfig(), key)
    default = str(default).lower() if isinstance(default, bool) else default  # as YAML has it
    wanted = LOSSES_WANTED if key == "losses" else describe_type(hint)
    if isinstance(default, list):
        default = ",".join(map(str, default))  # as --losses takes it
    raise ParameterError(
        f"{name} has no value: give {wanted}, or leave the key out for the default ({default})"
    )


SHORT_OPTIONS = {"jobs": "-j"}  # as cli.py declares them


def _short_option_hint(key: str, value: Any, name: str) -> str:
    """'-j=2' reaches here as '=2' (make's and ninja's habit): say how a short option is
    written."""
    short = SHORT_OPTIONS.get(key)
    typed = name.startswith("--")  # a flag, not a config file's key
    if not (short and typed and isinstance(value, str) and value.startswith("=")):
        return ""
    given = value[1:]
    return (
        f" (a short option takes its value after a space or none: {short} {given}, "
        f"{short}{given}, or {name}={given})"
    )


def _seed_list_hint(key: str, value: Any, name: str) -> str:
    """Seeds listed (``--seeds 0,1,2``, ``seeds: [0, 1, 2]``): --seeds is how many, one
    after another from --seed; consecutive ones are said as those two."""
    if key != "seeds":
        return ""
    listed = _numbers_listed(value)
    if listed is None or len(listed) < 2:
        return ""
    flag = name.startswith("--")  # else a config file's key
    seeds, seed = ("--seeds", "--seed") if flag else ("'seeds'", "'seed'")
    said = f" ({seeds} is how many seeds, one after another from {seed}"
    first, count = listed[0], len(listed)
    if not (first.is_integer() and listed == [first + step for step in range(count)]):
        return f"{said})"
    given = f"--seeds {count} --seed {first:g}" if flag else f"seeds: {count}, seed: {first:g}"
    return f"{said}: {given})"


def _numbers_listed(value: Any) -> list[float] | None:
    """The numbers of a list, or of text listing them (``0,1,2``, ``1e-3 3e-3``, ``[0, 1]``);
    None where ``value`` lists anything else."""
    parts = value if isinstance(value, list) else None
    if isinstance(value, str):
        parts = _list_items(value)
    try:
        return [float(part) for part in parts] if parts else None
    except (TypeError, ValueError):
        return None


def _comma_list_hint(value: Any) -> str:
    """Numbers separated otherwise than by commas (``1e-3 3e-3``, ``1e-3;3e-3``, a YAML or
    Python list pasted into a flag: ``[1e-3,3e-3]``): the comma-separated list meant."""
    listed = _numbers_listed(value)
    if not isinstance(value, str) or listed is None:
        return ""
    return f" (a list is separated by commas: did you mean '{','.join(_list_items(value))}'?)"


def _list_items(text: str) -> list[str]:
    """The items of a list written with any separator (spaces, semicolons, commas) or
    pasted with its brackets: ``1e-3 3e-3``, ``[0, 1]``."""
    return [part for part in re.split(r"[\s;,\[\]]+", text) if part]


def _grid_hint(key: str, value: Any) -> str:
    """Several learning rates given to --lr: --lr-grid is the option that takes them."""
    if key == "lr" and (isinstance(value, list) or (isinstance(value, str) and "," in value)):
        return "; to train at several learning rates use --lr-grid (lr_grid in a config file)"
    return ""


LOSSES_WANTED = "a list of loss names or a comma-separated string"


def _loss_labels(value: Any, name: str = "'losses'") -> list[str]:
    """Each loss's canonical label; ``all`` and patterns (``*dice*``) stay as written (lower
    case), for ``plan_run`` to expand once the dataset's mode is known."""
    if isinstance(value, str):
        items = split_spec_list(value)
    elif isinstance(value, list) and value:
        items = _rejoined_at_commas(value)
    elif value == []:  # 'losses: []': a list, yet none to train
        raise ParameterError(
            f"{name} lists no loss: give at least one, or leave the key out for the default "
            f"({DEFAULT_LOSSES})"
        )
    else:
        raise ParameterError(f"{name} must be {LOSSES_WANTED}")
    return [_loss_label(item) for item in items]


def _rejoined_at_commas(items: list[Any]) -> list[Any]:
    """A YAML flow list splits at every comma, those between a spec's parentheses too:
    ``[dice, tversky(alpha=0.3,beta=0.7)]`` reads as 'dice', 'tversky(alpha=0.3' and
    'beta=0.7)'. An item that leaves a bracket open is no spec alone: it is joined to the
    items after it, as --losses reads the same text."""
    joined: list[Any] = []
    for item in items:
        if joined and isinstance(item, str) and _leaves_a_bracket_open(joined[-1]):
            joined[-1] = f"{joined[-1]},{item}"
        else:
            joined.append(item)
    return joined


def _leaves_a_bracket_open(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    return text.count("(") + text.count("[") > text.count(")") + text.count("]")


def _loss_label(item: Any) -> str:
    try:
        return selector_name(item) or as_spec(_written_numbers(item)).label
    except SpecError as error:  # 'dice focal': one name, as parse_spec sees it
        raise SpecError(f"{error}{comma_hint(item)}") from None


def _written_numbers(value: Any) -> Any:
    """A loss or dataset written as a YAML mapping, with its parameters written like 1e-3
    as numbers (YAML 1.1, PyYAML's, reads them as text; YAML 1.2 as numbers)."""
    if isinstance(value, dict):
        return {key: _written_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_written_numbers(item) for item in value]
    if isinstance(value, str) and SCIENTIFIC_TEXT.fullmatch(value.strip()):
        return float(value)
    return value


def _float_list(value: Any, name: str = "'fg_fraction'") -> list[float] | None:
    if value is None:
        return None
    items = split_top_level(value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        items = [items]
    written = [item for item in items if not (isinstance(item, str) and not item.strip())]
    try:
        if any(isinstance(item, bool) for item in written):  # YAML's true is no rate of 1.0
            raise TypeError
        return [float(item) for item in written]  # none left: validate says what is missing
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} must be numbers, got {value!r}{_comma_list_hint(value)}"
        ) from None


def validate(config: RunConfig, origins: Origins | None = None) -> RunConfig:
    """Range checks a user can trip over; names are checked against registries later.
    Messages name each option as ``origins`` says it was given (flag, file, run.json).
    Returns ``config`` with each choice as listed (``--device CPU``: ``cpu``)."""
    names = origins or Origins()
    _check_whole_numbers(config, names)
    if config.image_size < 32 or config.image_size % 32:
        raise ParameterError(
            f"{names.name('image_size')} must be a multiple of 32 (U-Net): 32, 64, 96, ..., "
            f"got {names.shown('image_size', config.image_size)}"
        )
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ParameterError(
            f"{names.name('lr')} must be a positive finite number, "
            f"got {names.shown('lr', config.lr)}"
        )
    _check_lr_grid(config.lr_grid, names)
    _refuse_lr_beside_its_grid(config, names)
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise ParameterError(
            f"{names.name('weight_decay')} must be a finite number >= 0, "
            f"got {names.shown('weight_decay', config.weight_decay)}"
        )
    config = _named_choices(config, names)
    _refuse_unread_options(config, names)
    _check_fg_fractions(config, names)
    for text in [*config.losses, config.dataset]:
        if not selector_name(text):
            as_spec(text)  # raises SpecError on a malformed spec
    _check_limits(config, names)
    return config


# Seeds are stored as int64 (epochs.csv, run.json readers) and given to torch.manual_seed
# (which takes < 2**64) and numpy (any size): the last seed must fit in an int64.
MAX_SEED = 2**63 - 1
MAX_TRIALS = 100_000  # losses x seeds x datasets: more can never finish
MAX_EPOCHS = 100_000
MAX_NUM_WORKERS = 256
MAX_PARALLEL = 1024  # --jobs, --threads, --trials-per-gpu
MIN_LIMIT = 3  # one image each to train, validate and test

# Whole-number options: the least and the most a run can use (None: no bound here; the
# batch's memory is checked with the data).
WHOLE_RANGES: dict[str, tuple[int, int | None]] = {
    "epochs": (1, MAX_EPOCHS),
    "batch_size": (1, None),
    "seeds": (1, MAX_TRIALS),
    "seed": (0, MAX_SEED),
    "limit": (MIN_LIMIT, None),
    "num_workers": (0, MAX_NUM_WORKERS),
    "jobs": (1, MAX_PARALLEL),  # processes or threads to start
    "threads": (1, MAX_PARALLEL),
    "trials_per_gpu": (1, MAX_PARALLEL),
}
RANGE_REASONS = {"limit": " (one image each to train, validate and test)"}
# Options read from a flag's text as a number (int, float or either with None).
NUMERIC_FIELDS = frozenset(
    key
    for key, hint in FIELD_HINTS.items()
    if set(typing.get_args(hint) or (hint,)) - {type(None)} <= {int, float}
)


def _check_whole_numbers(config: RunConfig, names: Origins) -> None:
    for key, (least, most) in WHOLE_RANGES.items():
        value = getattr(config, key)
        if value is None or (least <= value and (most is None or value <= most)):
            continue
        accepted = f"at least {least}" if most is None else f"between {least} and {most}"
        raise ParameterError(
            f"{names.name(key)} must be {accepted}{RANGE_REASONS.get(key, '')}, "
            f"got {names.shown(key, value)}"
        )


def _choices() -> dict[str, tuple[str, ...]]:
    """The text options that take one of a few names, and those names (OPTIONAL_NAMES
    take none too)."""
    from losscmp.executors import EXECUTORS
    from losscmp.model import MODEL_PRESETS
    from losscmp.tracking import TRACKERS

    return {
        "device": DEVICES,
        "model": ("auto", *MODEL_PRESETS),
        "encoder_weights": ("imagenet",),
        "executor": tuple(EXECUTORS),
        "fuse": FUSE_MODES,
        "tracking": tuple(TRACKERS),
    }


def _named_choices(config: RunConfig, names: Origins) -> RunConfig:
    """``config`` with each choice as listed, in whatever case it was given (``--fuse ON``,
    ``device: CPU``), as --losses takes a loss's name: run.json records it one way, so runs
    combine and a resume compares like with like. A name that is no choice is refused."""
    named = {}
    for key, choices in _choices().items():
        value = getattr(config, key)
        if value is not None:  # none, where the option takes it
            named[key] = _check_choice(value, choices, key, names)
    return dataclasses.replace(config, **named)


def _check_choice(value: str, choices: tuple[str, ...], key: str, names: Origins) -> str:
    named = choice_named(value, choices)
    if named is None:
        none = " or none" if key in OPTIONAL_NAMES else ""
        raise ParameterError(
            f"{names.name(key)} must be one of {', '.join(choices)}{none}, got '{value}'"
            f"{_suggest_choice(value, choices)}"
        )
    return named


# Names users reach for that are not close in spelling to the choice they mean: a device's
# common name; a yes or no for --fuse (a config file's unquoted true/yes is read as 'on').
CHOICE_ALIASES = {
    "gpu": "cuda",
    "nvidia": "cuda",
    "metal": "mps",
    **dict.fromkeys(("true", "yes", "1"), "on"),
    **dict.fromkeys(("false", "no", "0"), "off"),
}


def _suggest_choice(value: str, choices: tuple[str, ...]) -> str:
    device, _, index = value.partition(":")
    if device.lower() == "cuda" and "cuda" in choices and index.isdigit():
        # 'did you mean cuda' would train on GPU 0 (or every visible GPU, one per job),
        # not on the one named
        return (
            f" (to train on GPU {index}: CUDA_VISIBLE_DEVICES={index} losscmp run ... "
            "--device cuda)"
        )
    meant = CHOICE_ALIASES.get(value.lower())
    return f" (did you mean '{meant}'?)" if meant in choices else suggest(value, choices)


def _refuse_lr_beside_its_grid(config: RunConfig, names: Origins) -> None:
    """The grid replaces the single rate, which would be dropped without a word where the
    user gave both in one place (two flags, one file) or --lr over a file's grid. A grid
    flag over a file's lr, or anything over a resumed run's stored pair, is no conflict."""
    rate, grid = names.origin("lr"), names.origin("lr_grid")
    if config.lr_grid is None or not names.given_now("lr") or grid is Origin.RESUMED_RUN:
        return
    if grid is Origin.FLAG and rate is not Origin.FLAG:
        return
    one_rate = ""
    if rate is Origin.FLAG and grid is Origin.CONFIG_FILE:  # the file's grid is no flag to drop
        rate_given = names.shown("lr", config.lr)
        one_rate = f" (for one rate over the file's grid: --lr-grid {rate_given}, not --lr)"
    raise ParameterError(
        f"{names.within('lr', 'lr_grid')}{names.option('lr')} and {names.option('lr_grid')} "
        f"both given: the grid trains each of its rates and replaces the single rate; give one"
        f"{one_rate}"
    )


def _check_lr_grid(grid: list[float] | None, names: Origins) -> None:
    if grid is None:
        return
    if not grid:
        raise ParameterError(
            f"{names.name('lr_grid')} needs at least one learning rate, e.g. 1e-3,3e-3,1e-2"
        )
    for rate in grid:
        if not (math.isfinite(rate) and rate > 0):
            raise ParameterError(
                f"{names.name('lr_grid')} values must be positive finite numbers, got {rate:g}"
            )
    _refuse_repeats(grid, names.name("lr_grid"), "rate")
    # A run recorded before this check trained such rates: its --resume is no user error.
    if names.origin("lr_grid") is not Origin.RESUMED_RUN:
        _refuse_rates_printed_alike(grid, names.name("lr_grid"))


def _refuse_rates_printed_alike(grid: list[float], option: str) -> None:
    """Rates are printed to 6 significant digits ('lr 0.001'): two that print alike
    (1e-3 and 1.0000001e-3) would name their trials and report columns the same."""
    for rate in grid:
        alike = [other for other in grid if f"{other:g}" == f"{rate:g}"]
        if len(alike) > 1:
            named = [rate_text(other) for other in alike]
            raise ParameterError(
                f"{option} rates {', '.join(named[:-1])} and {named[-1]} "
                f"{'both' if len(alike) == 2 else 'all'} print as {rate:g}, "
                "so their trials and columns would read the same; give rates that differ "
                "within 6 significant digits"
            )


def _check_fg_fractions(config: RunConfig, names: Origins) -> None:
    fractions, name = config.fg_fraction, names.name("fg_fraction")
    if fractions is None:
        return
    if not fractions:
        raise ParameterError(f"{name} needs at least one fraction, e.g. 0.005,0.02,0.1")
    from losscmp.data.synthetic import MAX_FG_FRACTION  # the generator's own limit

    for fraction in fractions:
        if not 0 < fraction < MAX_FG_FRACTION:
            raise ParameterError(
                f"{name} values must lie in (0, {MAX_FG_FRACTION}), got {fraction}"
            )
    entry = _dataset_entry(config)
    if entry is not None and "fg_fraction" not in entry.parameters:
        from losscmp.data import DATASET_REGISTRY

        dials = [other.name for other in DATASET_REGISTRY if "fg_fraction" in other.parameters]
        raise ParameterError(
            f"{name} applies to --dataset {' or '.join(dials)} only (a foreground fraction "
            f"it generates), and this run's dataset is {entry.name}"
        )
    _refuse_repeats(fractions, name, "fraction")
    _refuse_fraction_beside_its_sweep(config, names)


def _refuse_fraction_beside_its_sweep(config: RunConfig, names: Origins) -> None:
    """The sweep replaces the dataset's own fg_fraction, which would be dropped without a
    word where the user gave both in one place, or the dataset more specifically (a flag
    over a file's sweep). A sweep flag over a file's dataset, or a resumed run's stored
    pair, is no conflict (as for --lr beside --lr-grid)."""
    if "fg_fraction" not in config.dataset_spec.params:
        return
    sweep, dataset = names.origin("fg_fraction"), names.origin("dataset")
    if Origin.RESUMED_RUN in (sweep, dataset) or sweep > dataset:
        return
    one_fraction = ""
    if dataset is Origin.FLAG and sweep is Origin.CONFIG_FILE:  # no flag drops the file's
        spec = config.dataset_spec
        rest = _without_fraction(spec).label
        one_fraction = (
            f" (for one fraction over the file's sweep: --dataset {shlex.quote(rest)} "
            f"--fg-fraction {spec.params['fg_fraction']})"
        )
    raise ParameterError(
        f"{names.within('fg_fraction', 'dataset')}{names.option('fg_fraction')} and the "
        f"fg_fraction in {names.option('dataset')} both given: the sweep trains each of its "
        f"fractions and replaces the dataset's; give one{one_fraction}"
    )


def _refuse_repeats(values: list[float], option: str, noun: str) -> None:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ParameterError(
            f"{option} lists {', '.join(f'{value:g}' for value in repeated)} more than once; "
            f"give each {noun} once"
        )


def _check_limits(config: RunConfig, names: Origins) -> None:
    """Values no run can use together (they overflow a seed, or never finish)."""
    seed, seeds = names.option("seed"), names.option("seeds")
    last_seed = config.seed + config.seeds - 1
    if last_seed > MAX_SEED:
        span = f"{seed} {config.seed}" + (
            f" with {seeds} {config.seeds} (last seed {last_seed})" if config.seeds > 1 else ""
        )
        raise ParameterError(
            f"{names.within('seed', 'seeds')}{span}: seeds must be at most {MAX_SEED} (2**63 - 1)"
        )
    check_trial_count(config, names)


def check_trial_count(config: RunConfig, names: Origins | None = None) -> None:
    """At most MAX_TRIALS; ``plan_run`` checks again once ``all`` and patterns are expanded."""
    names = names or Origins()
    seeds = names.option("seeds")
    rates = len(config.lr_grid or [config.lr])
    trials = len(config.losses) * len(config.fg_fraction or [None]) * rates * config.seeds
    if trials > MAX_TRIALS:
        raise ParameterError(
            f"{names.within('seeds')}{seeds} {config.seeds} makes {trials} trials "
            f"({len(config.losses)} loss(es) x {len(config.fg_fraction or [None])} dataset(s) "
            f"x {rates} learning rate(s) x {config.seeds} seed(s)); at most {MAX_TRIALS}"
        )


def _dataset_entry(config: RunConfig):
    """The dataset's registry entry, or None for a name the runner refuses later (with
    its did-you-mean)."""
    from losscmp.data import DATASET_REGISTRY

    name = config.dataset_spec.name
    return DATASET_REGISTRY.get(name) if name in DATASET_REGISTRY else None


def _refuse_unread_options(config: RunConfig, names: Origins) -> None:
    """--ray-address without --executor ray, --data-dir for a dataset that reads none:
    the run would ignore them without a word. Left over from a config file under a flag
    that chose otherwise, or from a resumed run, they are no mistake and pass."""
    from losscmp.data import DATASET_REGISTRY
    from losscmp.executors import EXECUTORS, executor_class

    dataset = _dataset_entry(config)
    if config.data_dir is not None and dataset and "data_dir" not in dataset.run_options:
        readers = [entry.name for entry in DATASET_REGISTRY if "data_dir" in entry.run_options]
        path_hint = f"; give the folder as --dataset {dataset.name}:PATH"
        _refuse_unread(
            names, ("data_dir", "dataset", dataset.name), readers,
            path_hint if "path" in dataset.parameters else "",
        )  # fmt: skip
    if config.ray_address is None:  # the executors' modules are imported only to check it
        return
    if "ray_address" not in executor_class(config.executor).run_options:
        readers = [name for name in EXECUTORS if "ray_address" in executor_class(name).run_options]
        _refuse_unread(names, ("ray_address", "executor", config.executor), readers, "")


def _refuse_unread(names: Origins, choice: tuple[str, str, str], readers, hint: str) -> None:
    """Refuse ``option``, unread under ``chooser``'s value ``chosen`` (it is read with
    ``readers``), unless ``chooser`` was set in a more specific place than ``option``."""
    option, chooser, chosen = choice
    if not _given_with(names, option, chooser):
        return
    raise ParameterError(
        f"{names.within(option, chooser)}{names.option(option)} is read by "
        f"{names.option(chooser)} {' or '.join(readers)} only, and this run's "
        f"{chooser} is {chosen}{hint}"
    )


def _given_with(names: Origins, option: str, chooser: str) -> bool:
    """Whether ``option`` was given where ``chooser`` was, or more specifically (a flag
    beside a file's choice, a file's option under the default choice)."""
    return names.given_now(option) and names.origin(option) >= names.origin(chooser)
