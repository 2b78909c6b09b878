"""The loss registry: every loss of LOSSES.md by name, in binary and multiclass mode.

Importing this package costs no torch: the losses are registered by import path
(``catalogue.py``), and a loss's module is imported when ``create_loss`` builds it.

from losscmp.losses import create_loss, list_losses
loss = create_loss("tversky", mode="binary", alpha=0.3, beta=0.7)
value = loss(logits, target)          # raw logits; scalar, differentiable
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from losscmp.errors import ParameterError
from losscmp.losses.catalogue import (
    ALTERNATIVES,
    BINARY_MODE,
    LOSS_REGISTRY,
    MODES,
    MULTICLASS_MODE,
    OBJECT_DISTANCE,
    SIGNED_DISTANCE,
    check_mode,
)
from losscmp.registry import Entry

if TYPE_CHECKING:
    from losscmp.losses.base import SegLoss

__all__ = [
    "BINARY_MODE",
    "LOSS_REGISTRY",
    "MODES",
    "MULTICLASS_MODE",
    "OBJECT_DISTANCE",
    "SIGNED_DISTANCE",
    "SegLoss",
    "create_loss",
    "family_named",
    "get_loss_entry",
    "list_losses",
    "loss_name",
    "losses_listed",
    "losses_of_family",
    "mode_named",
]


def __getattr__(name: str) -> Any:
    if name == "SegLoss":  # the base class, for type checks: imports torch
        from losscmp.losses.base import SegLoss

        return SegLoss
    raise AttributeError(f"module 'losscmp.losses' has no attribute '{name}'")


def loss_name(name: str) -> str:
    """The registered loss ``name`` spells in any case (``Dice``: ``dice``), as patterns
    and ``losscmp losses`` match it; anything else as written, for its error to quote.
    Names are lower case, so run.json and the tables name a loss one way whatever was
    typed, and two runs combine."""
    lowered = name.lower()
    return lowered if lowered in LOSS_REGISTRY else name


def get_loss_entry(name: str) -> Entry:
    """The registry entry (description, family, modes, reference, formula, needs)."""
    return LOSS_REGISTRY.get(name)


def loss_to_show(text: str) -> Entry:
    """The entry ``losscmp losses --show TEXT`` describes: one loss's name, spaces around
    it ignored (as ``--losses`` ignores them). A pattern or parameters are refused with
    what to type instead."""
    from losscmp.errors import SpecError
    from losscmp.spec import ALL, is_selector

    name = text.strip()
    written = loss_written_with_parameters(name)
    if written:
        raise SpecError(
            f"--show takes a loss's name, without parameters (did you mean '--show {written}'?)"
        )
    if is_selector(name) and (name.lower() == ALL or LOSS_REGISTRY.names(name)):
        raise SpecError(
            f"--show takes one loss's name, not a pattern: losscmp losses '{name}' lists "
            "the losses it matches"
        )
    if family_named(name):
        raise SpecError(
            f"--show takes one loss's name, not a family's: losscmp losses '{name}' lists "
            "its losses"
        )
    return LOSS_REGISTRY.get(loss_name(name))


def loss_written_with_parameters(text: str) -> str | None:
    """The loss that ``text`` names with parameters (``focal(gamma=1)``, ``focal[gamma=1]``),
    where a command takes a bare name or a pattern; None if it names none that way."""
    from losscmp.spec import name_before_parameters

    name = name_before_parameters(text)
    return loss_name(name) if name and loss_name(name) in LOSS_REGISTRY else None


def losses_of_family(name: str, modes: tuple[str, ...] = MODES) -> list[str]:
    """The losses of the family ``name`` (``overlap``: the family column of ``losscmp
    losses``) defined for any of ``modes``, sorted; [] where ``name`` is no family."""
    family = name.strip().lower()
    return sorted(
        entry.name
        for entry in LOSS_REGISTRY
        if entry.family == family and set(entry.modes) & set(modes)
    )


def family_named(name: str, modes: tuple[str, ...] = MODES) -> str | None:
    """What to say where a loss is due and ``name`` is a family's, not a loss's: its losses
    of ``modes``, as the list --losses takes; None for any other name."""
    family = losses_of_family(name, modes)
    if not family or loss_name(name.strip()) in LOSS_REGISTRY:  # 'boundary': loss and family
        return None
    which = " or ".join(modes) + " " if tuple(modes) != MODES else ""
    return (
        f"'{name.strip()}' is a family of losses, not a loss; --losses takes its {which}losses "
        f"by name: {','.join(family)}"
    )


def mode_named(name: str) -> str | None:
    """What to say where a loss is due and ``name`` is a mode's (``binary``, as the modes
    column of ``losscmp losses`` says it); None for any other name."""
    if name.strip().lower() not in MODES:
        return None
    return (
        f"'{name.strip()}' is a mode, not a loss: --losses all trains every loss of the data's mode"
    )


def losses_listed(text: str | None) -> tuple[list[str], list[str]]:
    """What ``losscmp losses TEXT`` lists, sorted, and the notes to print under it: every
    loss; those a name or pattern matches (``all``: every one); a family's (``overlap``)
    or a mode's (``binary``), as their columns say them, with how --losses takes them; or
    several of these, separated by commas as in --losses."""
    from losscmp.errors import LosscmpError
    from losscmp.spec import split_spec_list

    if text is None or not text.strip():
        return list_losses(), []
    names: set[str] = set()
    notes: list[str] = []
    for item in split_spec_list(text):
        matched, note = _losses_of_item(item.strip())
        if not matched:
            raise LosscmpError(f"no loss matches '{item.strip()}'{suggest_loss(item.strip())}")
        names.update(matched)
        notes += [note] if note else []
    return sorted(names), notes


def _losses_of_item(item: str) -> tuple[list[str], str | None]:
    from losscmp.spec import ALL

    matched = list_losses(None if item.lower() == ALL else item)
    if matched:
        return matched, None
    family = family_named(item)
    if family:
        return losses_of_family(item), family
    mode = mode_named(item)
    if mode:
        return [entry.name for entry in LOSS_REGISTRY if item.lower() in entry.modes], mode
    return [], None


def suggest_loss(pattern: str) -> str:
    """A did-you-mean: for names separated by spaces, the list with commas; for a pattern,
    the pattern respelt (``*dcie*``: ``*dice*``); for a loss with parameters, in
    parentheses or in brackets (``focal[gamma=1]``, which would otherwise read as a
    pattern's character class), the loss's name."""
    from losscmp.errors import suggest, suggest_pattern
    from losscmp.spec import WILDCARDS, comma_hint

    written = loss_written_with_parameters(pattern)
    if written:
        return f" (a pattern names losses, without parameters: did you mean '{written}'?)"
    commas = comma_hint(pattern)
    if commas:
        return commas
    if set(pattern) & WILDCARDS:
        return suggest_pattern(pattern.lower(), list_losses())
    families = {entry.family for entry in LOSS_REGISTRY}  # listed by family too ('overlap')
    return suggest(pattern, [*list_losses(), *sorted(families)])


def list_losses(pattern: str | None = None) -> list[str]:
    """Sorted loss names, optionally filtered by an fnmatch pattern such as ``*dice*``."""
    return LOSS_REGISTRY.names(pattern)


def create_loss(name: str, mode: str = BINARY_MODE, **params: Any) -> SegLoss:
    """Build a loss by name; parameters are type-checked and coerced against its signature.

    Raises ``UnknownNameError`` (with a suggestion) for an unknown name and
    ``ParameterError`` for a bad parameter name, type or value, or an unsupported mode.
    """
    entry = LOSS_REGISTRY.get(name)
    check_mode(mode)
    if mode not in entry.modes:
        hint = f"; for {mode} use '{ALTERNATIVES[name]}'" if name in ALTERNATIVES else ""
        raise ParameterError(
            f"loss '{name}' is defined for {' and '.join(entry.modes)} mode only{hint}"
        )
    try:
        loss = LOSS_REGISTRY.create(name, params, mode=mode)
    except ParameterError as error:
        raise ParameterError(name_the_loss(name, str(error))) from None
    loss.needs = entry.needs
    return loss


def name_the_loss(name: str, message: str) -> str:
    """'gamma must be >= 0' says nothing about which of several losses is meant."""
    if message.startswith((f"loss '{name}'", f"{name}:")):
        return message
    return f"loss '{name}': {message}"
