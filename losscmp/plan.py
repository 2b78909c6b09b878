"""The plan: every check a user's options can fail, and the trials they imply.

Nothing here trains or writes. ``plan_run`` checks names and parameters
against the registries without loading data; the runner's ``prepare`` then
loads the data and probes each loss (``probe_loss``) before any folder exists.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from losscmp.config import Origins, RunConfig, check_trial_count
from losscmp.errors import LosscmpError, ParameterError, UnknownNameError, suggest_pattern
from losscmp.registry import canonical
from losscmp.results import trial_id
from losscmp.spec import ALL, Spec, as_spec, bracketed_parameters, selector_name
from losscmp.tracking import check_tracker


@dataclass(frozen=True)
class Trial:
    """One training run: a loss on a dataset from a seed at a learning rate.

    ``lr`` None (hand-made trials, the Python API) trains at the settings' rate and
    names the trial as version 1 did; the planner always sets it.
    """

    dataset: str
    loss: str
    seed: int
    lr: float | None = None

    @property
    def id(self) -> str:
        return trial_id(self.dataset, self.loss, self.seed, self.lr)


@dataclass(frozen=True)
class Selection:
    """What ``all`` or a pattern in ``--losses`` stood for: the losses of ``mode`` it
    matched (registry order) and, of those, the ones it ``added`` (not listed before it)."""

    selector: str
    mode: str
    matched: tuple[str, ...]
    added: tuple[str, ...]


@dataclass
class Plan:
    """Checked config and the trials it implies, before any data is loaded. ``config.losses``
    holds the losses ``all`` and patterns expanded to; ``selections`` says how."""

    config: RunConfig
    loss_specs: dict[str, Spec]
    dataset_specs: dict[str, Spec]
    trials: list = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + offset for offset in range(self.config.seeds)]

    @property
    def rates(self) -> list[float]:
        """The learning rates every loss trains at: the grid, or the one --lr."""
        return list(self.config.lr_grid or [self.config.lr])


def plan_run(config: RunConfig) -> Plan:
    """Check every loss, dataset and preset name and parameter; list the trials. Writes nothing.

    Specs are rewritten in canonical form (parameters in signature order, values
    coerced), so ``dice(smooth=1,reduction=image)`` and ``dice(reduction=image,
    smooth=1.0)`` are one loss with one label, in results and on ``--resume``.
    """
    from losscmp.data import DATASET_REGISTRY
    from losscmp.losses import LOSS_REGISTRY
    from losscmp.model import resolve_preset

    check_resources(config)
    check_tracker(config.tracking, config.out)  # e.g. MLflow not installed, no server
    if config.model != "auto":
        resolve_preset(config.model, "cpu")  # an unknown preset fails here, dry run included
    given = [selector_name(text) or _given_loss(text, config) for text in config.losses]
    datasets = _canonical_specs(DATASET_REGISTRY, config.dataset_specs())
    dataset_specs = {spec.label: spec for spec in datasets}
    (base_dataset,) = _canonical_specs(DATASET_REGISTRY, [config.dataset_spec])
    selecting = any(isinstance(item, str) for item in given)  # 'all' or a pattern
    modes = _modes(datasets) if selecting else []  # only a selector needs the mode early
    losses, selections = select_losses(LOSS_REGISTRY, given, modes)
    loss_specs = {spec.label: spec for spec in losses}
    config = dataclasses.replace(config, losses=list(loss_specs), dataset=base_dataset.label)
    check_trial_count(config, config.origins)  # again: 'all' counted as one loss until now
    plan = Plan(config, loss_specs, dataset_specs, selections=selections)
    plan.trials = [
        Trial(dataset, loss, seed, lr)
        for dataset, seed, lr, loss in itertools.product(
            dataset_specs, plan.seeds, plan.rates, loss_specs
        )
    ]
    return plan


def check_resources(config: RunConfig) -> None:
    """What the machine must offer: every dataset check short of loading (files, layout,
    memory), a batch that fits and the packages the run imports. Not part of config
    validation: a resumed run's stored config is rebuilt too, and its data may have moved
    (``--data-dir`` may change), or run where a package is missing."""
    from losscmp.data import check_dataset
    from losscmp.data.memory import check_batch_fits
    from losscmp.dependencies import check_installed

    check_batch_fits(config.batch_size, config.image_size)
    for spec in config.dataset_specs():
        check_dataset(
            spec, data_dir=config.data_dir, image_size=config.image_size, limit=config.limit
        )
    # After the datasets' own checks: their mistakes are the user's to fix first.
    check_installed(config.dataset_specs())


def _given_loss(text: str, config: RunConfig) -> Spec:
    """A loss of --losses in canonical form; a family's name (``overlap``, as ``losscmp
    losses`` shows it) is refused with that family's losses of the run's mode, to give, and
    a mode's (``binary``) with ``all``. A name in capitals is the loss (``Dice``: ``dice``),
    as a pattern in capitals matches it."""
    from losscmp.losses import LOSS_REGISTRY, family_named, loss_name, mode_named

    spec = as_spec(text)
    try:
        return _canonical_spec(LOSS_REGISTRY, Spec(loss_name(spec.name), spec.params))
    except UnknownNameError:
        name = spec.name
        meant = mode_named(name) or family_named(name, _modes_if_known(config))
        if meant is None:
            raise
        raise UnknownNameError(meant) from None


def _modes_if_known(config: RunConfig) -> tuple[str, ...]:
    """The run's dataset modes, or every mode where the dataset cannot tell yet."""
    from losscmp.data import DATASET_REGISTRY
    from losscmp.losses import MODES

    try:
        return tuple(_modes(_canonical_specs(DATASET_REGISTRY, config.dataset_specs())))
    except LosscmpError:
        return MODES


def _canonical_specs(registry, specs: list[Spec]) -> list[Spec]:
    return [_canonical_spec(registry, spec) for spec in specs]


def _canonical_spec(registry, spec: str | Spec) -> Spec:
    spec = as_spec(spec)
    return Spec(spec.name, canonical(registry.get(spec.name), spec.params, registry.kind))


def _modes(datasets: list[Spec]) -> list[str]:
    from losscmp.data import dataset_mode

    return list(dict.fromkeys(dataset_mode(spec) for spec in datasets))


def select_losses(
    registry, given: list[Spec | str], modes: list[str]
) -> tuple[list[Spec], list[Selection]]:
    """The losses to train: ``given``'s specs, with each selector (``all``, a pattern; a
    ``str``) replaced by the losses of the run's mode it matches, in registry order.
    A loss a selector brings that is listed before it, or that a later spec repeats, is
    kept once, first; a spec written twice, or two spellings of one loss, is refused (one
    trial each would train the same thing twice), as is a selector that matches no loss."""
    selectors = [item for item in given if isinstance(item, str)]
    mode = _selection_mode(selectors, modes) if selectors else None
    seen: dict[tuple, tuple[str, bool]] = {}  # a loss's identity -> (label, from a selector)
    losses, selections = [], []
    for item in given:
        if isinstance(item, Spec):
            if _keep(registry, item, seen, selected=False):
                losses.append(item)
            continue
        matched = _matching(registry, item, mode)
        added = [Spec(name) for name in matched if _keep(registry, Spec(name), seen, True)]
        losses += added
        selections.append(
            Selection(item, mode, tuple(matched), tuple(spec.label for spec in added))
        )
    return losses, selections


def _keep(registry, spec: Spec, seen: dict[tuple, tuple[str, bool]], selected: bool) -> bool:
    """Whether ``spec`` is a loss not yet in ``seen`` (and record it); two specs of one loss
    whose parameters, defaults filled in, are equal, neither from a selector, are refused."""
    resolved = {**registry.get(spec.name).defaults, **spec.params}
    key = (spec.name, tuple(sorted((name, repr(value)) for name, value in resolved.items())))
    if key not in seen:
        seen[key] = (spec.label, selected)
        return True
    label, earlier_selected = seen[key]
    if selected or earlier_selected:
        return False
    same = "listed twice" if label == spec.label else f"the same loss as '{label}'"
    raise ParameterError(f"'{spec.label}' is {same}")


def _selection_mode(selectors: list[str], modes: list[str]) -> str:
    """The one mode of the run's datasets: ``all`` means every loss defined for it."""
    if len(modes) == 1:
        return modes[0]
    raise ParameterError(
        f"'{selectors[0]}' cannot choose the losses of this run: its datasets are "
        f"{' and '.join(modes)}, and losses are defined per mode; name the losses"
    )


def _matching(registry, selector: str, mode: str) -> list[str]:
    """The losses of ``mode`` that ``selector`` matches, sorted; none is a user error."""
    every = registry.names(None if selector == ALL else selector)
    matched = [name for name in every if mode in registry.get(name).modes]
    if matched:
        return matched
    if every:
        others = {other for name in every for other in registry.get(name).modes}
        raise ParameterError(
            f"no {mode} loss matches '{selector}': it matches {', '.join(every)}, defined for "
            f"{' and '.join(sorted(others))} mode only, and this run's data is {mode}"
        )
    usable = [name for name in registry.names() if mode in registry.get(name).modes]
    raise ParameterError(
        f"no loss matches '{selector}'{_bracketed_parameters(selector, usable)}"
        f"{suggest_pattern(selector, usable)}; 'losscmp losses' lists them"
    )


def _bracketed_parameters(selector: str, names: list[str]) -> str:
    """A did-you-mean for parameters written in square brackets (``focal[gamma=1]``), which
    fnmatch reads as a character class."""
    found = bracketed_parameters(selector)
    if not (found and found[0] in names):
        return ""
    return f" (parameters go in parentheses: did you mean '{found[0]}({found[1]})'?)"


def make_loss(spec: Spec, data):
    """Create the loss for this dataset's mode, telling it which label the masks ignore."""
    from losscmp.losses import create_loss, get_loss_entry

    params = dict(spec.params)
    entry = get_loss_entry(spec.name)
    if data.ignore_index is not None and "ignore_index" in entry.parameters:
        given = params.setdefault("ignore_index", data.ignore_index)
        if given != data.ignore_index:  # the masks' own label would reach the loss as a class
            raise ParameterError(
                f"loss '{spec.label}': ignore_index={given!r}, but {data.spec} marks the pixels "
                f"to ignore with {data.ignore_index}; leave ignore_index out to use that"
            )
    return create_loss(spec.name, mode=data.mode, **params)


def probe_loss(label: str, loss, data) -> None:
    """One tiny forward pass: per-class parameters (class_weights, alpha lists) are checked
    against the number of classes only when the loss sees logits."""
    import torch

    logits = torch.zeros(2, data.out_channels, 8, 8)
    if data.mode == "binary":
        target = torch.zeros(2, 1, 8, 8)
    else:
        target = torch.zeros(2, 8, 8, dtype=torch.long)
    try:
        loss(logits, target)
    except ParameterError as error:
        raise ParameterError(f"loss '{label}' on {data.spec}: {error}") from None


def check_image_size(preset, image_size: int, names: Origins | None = None) -> None:
    """BatchNorm cannot normalise a 1x1 feature map of a single sample: keep the deepest
    features at least 2x2. ``names``: where the options came from (a config file's key is
    named as the file gave it, not as a flag the command line did not have)."""
    names = names or Origins()
    smallest = 2 * 2 ** preset.unet_kwargs.get("encoder_depth", 5)
    if image_size < smallest:
        raise ParameterError(
            f"{names.within('image_size', 'model')}{names.option('image_size')} {image_size} is "
            f"too small for the {preset.name} model (its deepest features would be 1x1); use "
            f"{smallest} or more, or {names.option('model')} tiny"
        )
