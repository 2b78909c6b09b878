"""The plan: every check a user's options can fail, and the trials they imply.

Nothing here trains or writes. ``plan_run`` checks names and parameters
against the registries without loading data; the runner's ``prepare`` then
loads the data and probes each loss (``probe_loss``) before any folder exists.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from losscmp.config import RunConfig
from losscmp.errors import ParameterError
from losscmp.registry import canonical
from losscmp.results import trial_id
from losscmp.spec import Spec
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


@dataclass
class Plan:
    """Checked config and the trials it implies, before any data is loaded."""

    config: RunConfig
    loss_specs: dict[str, Spec]
    dataset_specs: dict[str, Spec]
    trials: list = field(default_factory=list)

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
    losses = _canonical_specs(LOSS_REGISTRY, config.loss_specs)
    _refuse_equivalent_losses(LOSS_REGISTRY, losses)
    loss_specs = {spec.label: spec for spec in losses}
    datasets = _canonical_specs(DATASET_REGISTRY, config.dataset_specs())
    dataset_specs = {spec.label: spec for spec in datasets}
    (base_dataset,) = _canonical_specs(DATASET_REGISTRY, [config.dataset_spec])
    config = dataclasses.replace(config, losses=list(loss_specs), dataset=base_dataset.label)
    plan = Plan(config, loss_specs, dataset_specs)
    plan.trials = [
        Trial(dataset, loss, seed, lr)
        for dataset, seed, lr, loss in itertools.product(
            dataset_specs, plan.seeds, plan.rates, loss_specs
        )
    ]
    return plan


def check_resources(config: RunConfig) -> None:
    """What the machine must offer: every dataset check short of loading (files, layout,
    memory) and a batch that fits. Not part of config validation: a resumed run's stored
    config is rebuilt too, and its data may have moved (``--data-dir`` may change)."""
    from losscmp.data import check_dataset
    from losscmp.data.memory import check_batch_fits

    check_batch_fits(config.batch_size, config.image_size)
    for spec in config.dataset_specs():
        check_dataset(
            spec, data_dir=config.data_dir, image_size=config.image_size, limit=config.limit
        )


def _canonical_specs(registry, specs: list[Spec]) -> list[Spec]:
    return [
        Spec(spec.name, canonical(registry.get(spec.name), spec.params, registry.kind))
        for spec in specs
    ]


def _refuse_equivalent_losses(registry, specs: list[Spec]) -> None:
    """Two specs of one loss whose parameters, defaults filled in, are equal: one trial each
    would train the same thing twice."""
    seen: dict[tuple, str] = {}
    for spec in specs:
        resolved = {**registry.get(spec.name).defaults, **spec.params}
        key = (spec.name, tuple(sorted((name, repr(value)) for name, value in resolved.items())))
        if key in seen:
            same = "listed twice" if seen[key] == spec.label else f"the same loss as '{seen[key]}'"
            raise ParameterError(f"'{spec.label}' is {same}")
        seen[key] = spec.label


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


def check_image_size(preset, image_size: int) -> None:
    """BatchNorm cannot normalise a 1x1 feature map of a single sample: keep the deepest
    features at least 2x2."""
    smallest = 2 * 2 ** preset.unet_kwargs.get("encoder_depth", 5)
    if image_size < smallest:
        raise ParameterError(
            f"--image-size {image_size} is too small for the {preset.name} model "
            f"(its deepest features would be 1x1); use {smallest} or more, or --model tiny"
        )
