"""The run configuration: defaults < YAML file < command-line flags.

Kept free of torch so the CLI can parse and validate without importing it.
Loss and dataset names are checked against their registries later, in the
runner, before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from losscmp.errors import ConfigError, LosscmpError, ParameterError, suggest
from losscmp.registry import SCIENTIFIC_TEXT, coerce, describe_type
from losscmp.spec import Spec, as_spec, parse_spec_list, split_top_level

DEVICES = ("auto", "cpu", "cuda", "mps")
FUSE_MODES = ("auto", "on", "off")  # auto: fuse the losses of a seed on CUDA only
MAX_FUSED_LOSSES = 16  # losses per fused model: bounds the stacked activations' memory
# Devices where AdamW runs torch's fused kernel: one pass over all parameters, 2.5x faster
# than the default per-parameter loop on the CPU, a launch-bound step's saving on CUDA.
FUSED_ADAMW_DEVICES = ("cpu", "cuda")
MAX_FG_FRACTION = 0.9  # the synthetic generator's limit (losscmp.data.synthetic)
DEFAULT_LOSSES = "dice,focal,tversky"
OPTIONAL_NAMES = ("encoder_weights", "tracking")  # fields where 'none' means None


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

    @property
    def loss_specs(self) -> list[Spec]:
        return [as_spec(text) for text in self.losses]

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
        return dataclasses.asdict(self)

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


FIELD_NAMES = [f.name for f in dataclasses.fields(RunConfig)]
FIELD_HINTS = typing.get_type_hints(RunConfig)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a flat mapping of RunConfig fields."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a YAML file")
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
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        kind = "a list" if isinstance(content, list) else f"the value {content!r}"
        raise ConfigError(f"config file {path} must hold a mapping of options, not {kind}")
    options: dict[str, Any] = {}
    for written, value in content.items():
        key = str(written).replace("-", "_")
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


class DuplicateOption(Exception):
    pass


@functools.cache
def _config_loader():
    """PyYAML's safe loader, refusing a key given twice (YAML would keep the last)."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=True) for key, _ in node.value]
            repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
            if repeated:
                raise DuplicateOption(f"'{repeated[0]}' is given twice")
            return super().construct_mapping(node, deep=deep)

    return ConfigLoader


def build_config(
    file: str | Path | None = None, base: dict[str, Any] | None = None, **flags: Any
) -> RunConfig:
    """Merge defaults < ``base`` (a stored run's config) < the file < flags given (not None)."""
    options: dict[str, Any] = dict(base or {})
    sources = dict.fromkeys(options, "the resumed run's run.json is damaged: config")
    from_file = load_yaml(file) if file else {}
    options.update(from_file)
    sources.update(dict.fromkeys(from_file, f"config file {file}"))
    given = {key: value for key, value in flags.items() if value is not None}
    options.update(given)
    sources.update({key: "--" + key.replace("_", "-") for key in given})
    values = {}
    for key, value in options.items():
        try:
            values[key] = normalise(key, value)
        except LosscmpError as error:  # named after where the value came from
            raise type(error)(f"{sources.get(key, 'options')}: {error}") from None
    try:
        config = RunConfig(**values)
    except TypeError as error:
        raise ConfigError(f"options: {error}") from None
    validate(config)
    return config


def normalise(key: str, value: Any) -> Any:
    """Bring a YAML or flag value to the field's type; list fields accept comma strings."""
    if key == "losses":
        return _loss_labels(value)
    if key == "dataset":
        return as_spec(_written_numbers(value)).label
    if key in ("fg_fraction", "lr_grid"):
        return _float_list(value, key)
    if key in OPTIONAL_NAMES and isinstance(value, str) and value.lower() in ("none", ""):
        return None
    hint = FIELD_HINTS[key]
    try:
        return coerce(value, hint)
    except (TypeError, ValueError):
        raise ParameterError(f"'{key}' must be {describe_type(hint)}, got {value!r}") from None


def _loss_labels(value: Any) -> list[str]:
    if isinstance(value, str):
        return [spec.label for spec in parse_spec_list(value)]
    if isinstance(value, list) and value:
        return [as_spec(_written_numbers(item)).label for item in value]
    raise ParameterError("'losses' must be a list of loss names or a comma-separated string")


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


def _float_list(value: Any, key: str = "fg_fraction") -> list[float] | None:
    if value is None:
        return None
    items = split_top_level(value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        items = [items]
    try:
        return [float(item) for item in items]
    except (TypeError, ValueError):
        raise ParameterError(f"'{key}' must be numbers, got {value!r}") from None


def validate(config: RunConfig) -> None:
    """Range checks a user can trip over; names are checked against registries later."""
    _at_least(config.epochs, 1, "--epochs")
    _at_least(config.batch_size, 1, "--batch-size")
    _at_least(config.seeds, 1, "--seeds")
    _at_least(config.seed, 0, "--seed")
    _at_least(config.num_workers, 0, "--num-workers")
    if config.limit is not None:
        _at_least(config.limit, 1, "--limit")
    if config.image_size < 32 or config.image_size % 32:
        raise ParameterError(
            f"--image-size must be a multiple of 32 (U-Net), got {config.image_size}"
        )
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ParameterError(f"--lr must be a positive number, got {config.lr}")
    _check_lr_grid(config.lr_grid)
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise ParameterError(f"weight_decay must be a number >= 0, got {config.weight_decay}")
    if config.device not in DEVICES:
        raise ParameterError(
            f"--device must be one of {', '.join(DEVICES)}, got '{config.device}'"
            f"{suggest(config.device, DEVICES)}"
        )
    _check_execution(config)
    _check_tracking(config)
    if config.encoder_weights not in (None, "imagenet"):
        raise ParameterError("encoder_weights must be none or 'imagenet'")
    for fraction in config.fg_fraction or []:
        if not 0 < fraction < MAX_FG_FRACTION:
            raise ParameterError(
                f"--fg-fraction values must lie in (0, {MAX_FG_FRACTION}), got {fraction}"
            )
    if config.fg_fraction and config.dataset_spec.name != "synthetic":
        raise ParameterError("--fg-fraction applies to the synthetic dataset only")
    for text in [*config.losses, config.dataset]:
        as_spec(text)  # raises SpecError on a malformed spec
    _check_fg_fractions(config)
    _check_limits(config)


# Seeds are stored as int64 (epochs.csv, run.json readers) and given to torch.manual_seed
# (which takes < 2**64) and numpy (any size): the last seed must fit in an int64.
MAX_SEED = 2**63 - 1
MAX_TRIALS = 100_000  # losses x seeds x datasets: more can never finish
MAX_EPOCHS = 100_000
MAX_NUM_WORKERS = 256
MAX_PARALLEL = 1024  # --jobs, --threads, --trials-per-gpu


def _check_lr_grid(grid: list[float] | None) -> None:
    if grid is None:
        return
    if not grid:
        raise ParameterError("--lr-grid needs at least one learning rate, e.g. 1e-3,3e-3,1e-2")
    for rate in grid:
        if not (math.isfinite(rate) and rate > 0):
            raise ParameterError(f"--lr-grid values must be positive numbers, got {rate:g}")
    _refuse_repeats(grid, "--lr-grid", "rate")


def _check_fg_fractions(config: RunConfig) -> None:
    _refuse_repeats(config.fg_fraction or [], "--fg-fraction", "fraction")


def _refuse_repeats(values: list[float], option: str, noun: str) -> None:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ParameterError(
            f"{option} lists {', '.join(f'{value:g}' for value in repeated)} more than once; "
            f"give each {noun} once"
        )


def _check_limits(config: RunConfig) -> None:
    """Upper bounds: values no run can use (they overflow a seed, or never finish)."""
    last_seed = config.seed + config.seeds - 1
    if last_seed > MAX_SEED:
        span = f"--seed {config.seed}" + (
            f" with --seeds {config.seeds} (last seed {last_seed})" if config.seeds > 1 else ""
        )
        raise ParameterError(f"{span}: seeds must be at most {MAX_SEED} (2**63 - 1)")
    rates = len(config.lr_grid or [config.lr])
    trials = len(config.losses) * len(config.fg_fraction or [None]) * rates * config.seeds
    if trials > MAX_TRIALS:
        raise ParameterError(
            f"--seeds {config.seeds} makes {trials} trials "
            f"({len(config.losses)} loss(es) x {len(config.fg_fraction or [None])} dataset(s) "
            f"x {rates} learning rate(s) x {config.seeds} seed(s)); at most {MAX_TRIALS}"
        )
    if config.epochs > MAX_EPOCHS:
        raise ParameterError(f"--epochs must be at most {MAX_EPOCHS}, got {config.epochs}")
    if config.num_workers > MAX_NUM_WORKERS:
        raise ParameterError(
            f"--num-workers must be at most {MAX_NUM_WORKERS}, got {config.num_workers}"
        )


def _check_execution(config: RunConfig) -> None:
    from losscmp.executors import EXECUTORS

    if config.executor not in EXECUTORS:
        raise ParameterError(
            f"--executor must be one of {', '.join(EXECUTORS)}, got '{config.executor}'"
            f"{suggest(config.executor, EXECUTORS)}"
        )
    if config.fuse not in FUSE_MODES:
        raise ParameterError(
            f"--fuse must be one of {', '.join(FUSE_MODES)}, got '{config.fuse}'"
            f"{suggest(config.fuse, FUSE_MODES)}"
        )
    for name in ("jobs", "threads", "trials_per_gpu"):  # processes or threads to start
        value, flag = getattr(config, name), "--" + name.replace("_", "-")
        if value is not None:
            _at_least(value, 1, flag)
            if value > MAX_PARALLEL:
                raise ParameterError(f"{flag} must be at most {MAX_PARALLEL}, got {value}")


def _check_tracking(config: RunConfig) -> None:
    from losscmp.tracking import TRACKERS

    if config.tracking is not None and config.tracking not in TRACKERS:
        raise ParameterError(
            f"--tracking must be one of {', '.join(TRACKERS)} or none, got '{config.tracking}'"
            f"{suggest(config.tracking, TRACKERS)}"
        )


def _at_least(value: int, minimum: int, name: str) -> None:
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value}")
