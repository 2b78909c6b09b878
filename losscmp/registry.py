"""A small registry in the style of timm's factories.

One frozen ``Entry`` per registered thing (loss, dataset, model preset), one
``Registry`` instance per kind, and parameter checking against the factory's
signature so that ``tversky(alpha=x)`` or ``focal(gama=1)`` fails with one clear
line instead of a traceback deep inside torch.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from losscmp.errors import ParameterError, suggest, unknown
from losscmp.signatures import StaticSignature, Unreadable, read_signature


@dataclass(frozen=True)
class Entry:
    """One registered factory and what a user needs to know about it."""

    name: str
    # The callable, or its import path "package.module:Name": imported when first called
    # (``load``), its parameters read from its source until then (``losscmp.signatures``).
    factory: Callable[..., Any] | str
    description: str
    family: str = ""
    modes: tuple[str, ...] = ("binary", "multiclass")
    reference: str = ""
    formula: str = ""
    needs: frozenset[str] = field(default_factory=frozenset)
    # A loss: whether binary targets may be probabilities in [0, 1] (soft labels).
    soft_targets: bool = False
    # Parameters the caller supplies (a loss's ``mode``), not the user's spec.
    context_params: frozenset[str] = frozenset()
    # A dataset's checks that need no loading (same arguments as ``factory``), or None.
    precheck: Callable[..., Any] | None = None
    # Run options this entry reads besides its own parameters (pets: ``data_dir``); the
    # run refuses them given for an entry that would ignore them.
    run_options: frozenset[str] = frozenset()
    # A dataset's row in ``losscmp datasets`` (present, path, how_to_get) under a root
    # folder; None: nothing to fetch, always present.
    status: Callable[[Any], dict[str, Any]] | None = None
    # A dataset's download (dest, progress=..., **options) -> dest, or None.
    download: Callable[..., Any] | None = None
    # Where ``datasets download NAME`` puts it without --data-dir; None: datasets/NAME.
    download_to: Path | None = None
    # What to check when a dataset's training masks hold no foreground (the data -> text).
    foreground_hint: Callable[[Any], str] | None = None
    # A dataset's mode, 'binary' or 'multiclass', from its checked parameters (as
    # ``factory`` takes them), known before loading: ``--losses all`` depends on it.
    mode_of: Callable[..., str] | None = None
    # A dataset's augmentation (``data.base.Augmentation``), known before loading: a run
    # checks the modules it imports are installed. None: SegmentationData's default.
    augmentation: str | None = None

    @property
    def module(self) -> str:
        """The module defining the factory: ``losscmp.losses.overlap``, or a user's own."""
        if isinstance(self.factory, str):
            return self.factory.partition(":")[0]
        return getattr(self.factory, "__module__", "") or ""

    @property
    def from_losscmp(self) -> bool:
        """Whether losscmp registers it (every process has it), not a user's code."""
        return self.module == "losscmp" or self.module.startswith("losscmp.")

    def for_workers(self) -> Entry:
        """What a worker process needs to create it: the factory and what describes its
        parameters. The main process's hooks (checks, status, download, hints, mode) stay
        behind: a notebook's lambda (``mode_of=lambda **params: "binary"``) cannot be
        pickled for a spawned worker, and a worker runs none of them."""
        return dataclasses.replace(
            self, precheck=None, status=None, download=None, foreground_hint=None, mode_of=None
        )

    def load(self) -> Callable[..., Any]:
        """The factory itself: one registered by import path is imported now."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)

    def _static(self) -> StaticSignature | None:
        """The signature of a factory registered by import path, read without importing
        it; None where its source says more than the reader evaluates."""
        if not isinstance(self.factory, str):
            return None
        try:
            return read_signature(self.factory)
        except Unreadable:
            return None

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """User-settable parameters, in signature order."""
        static = self._static()
        signature = static.signature if static else inspect.signature(self.load())
        return {
            name: param
            for name, param in signature.parameters.items()
            if name not in self.context_params
            and name != "self"
            and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        }

    @property
    def defaults(self) -> dict[str, Any]:
        return {
            name: param.default
            for name, param in self.parameters.items()
            if param.default is not inspect.Parameter.empty
        }

    def type_hints(self) -> dict[str, Any]:
        static = self._static()
        if static is not None:
            return static.hints
        factory = self.load()
        target = factory.__init__ if inspect.isclass(factory) else factory
        try:
            return typing.get_type_hints(target)
        except Exception:  # unresolvable hints: fall back to no type checks
            return {}


class Registry:
    """Named factories of one kind (``loss``, ``dataset``, ``model preset``)."""

    def __init__(self, kind: str, context_params: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.context_params = frozenset(context_params)
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} '{entry.name}' is registered twice")
        entry = dataclasses.replace(
            entry, context_params=entry.context_params | self.context_params
        )
        self._entries[entry.name] = entry
        return entry

    def register(self, name: str, description: str, **fields: Any) -> Callable:
        """Decorator: ``@REGISTRY.register("dice", "Soft Dice loss", family="overlap")``;
        called on an import path ("package.module:Name"), it registers that."""

        def decorate(factory: Callable | str) -> Callable | str:
            self.add(Entry(name=name, factory=factory, description=description, **fields))
            return factory

        return decorate

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown(self.kind, name, self._entries) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by an fnmatch pattern such as ``*dice*``."""
        names = sorted(self._entries)
        if pattern:  # names are lower case; DICE is dice whatever the platform's fnmatch does
            names = [name for name in names if fnmatch.fnmatchcase(name, pattern.lower())]
        return names

    def create(self, name: str, params: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Check ``params`` against the factory's signature, then call it."""
        entry = self.get(name)
        checked = check_params(entry, dict(params or {}), self.kind)
        return entry.load()(**context, **checked)


def canonical(entry: Entry, params: dict[str, Any], kind: str = "") -> dict[str, Any]:
    """Checked params in signature order, so equal specs get equal labels."""
    checked = check_params(entry, params, kind)
    return {name: checked[name] for name in entry.parameters if name in checked}


def check_params(entry: Entry, params: dict[str, Any], kind: str = "") -> dict[str, Any]:
    """Reject unknown names, coerce and type-check values; returns the coerced dict."""
    allowed = entry.parameters
    hints = entry.type_hints()
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            raise ParameterError(
                f"{kind} '{entry.name}' has no parameter '{key}'{suggest(key, allowed)}; "
                f"valid parameters: {valid}"
            )
        hint = hints.get(key, Any)
        try:
            checked[key] = coerce(value, hint)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{kind} '{entry.name}': {key}={value!r} is not {describe_type(hint)}"
                f"{_suggest_choice(value, hint)}"
            ) from None
        if not is_finite(checked[key]):
            raise ParameterError(
                f"{kind} '{entry.name}': {key}={value!r} must be a finite number "
                "(inf, nan and numbers too large for a float are refused)"
            )
    missing = [
        name
        for name, param in allowed.items()
        if param.default is inspect.Parameter.empty and name not in checked
    ]
    if missing:
        raise ParameterError(
            f"{kind} '{entry.name}' needs {', '.join(missing)}: e.g. {entry.name}({missing[0]}=...)"
        )
    return checked


def _suggest_choice(value: Any, hint: Any) -> str:
    """A did-you-mean for a misspelt choice of a ``Literal`` parameter (alone or in a union)."""
    if not isinstance(value, str):
        return ""
    return suggest(value, [choice for choice in literal_choices(hint) if isinstance(choice, str)])


def literal_choices(hint: Any) -> list[Any]:
    """The values a ``Literal`` hint allows, those of a union's ``Literal`` members included."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return list(typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return [choice for option in typing.get_args(hint) for choice in literal_choices(option)]
    return []


def is_finite(value: Any) -> bool:
    """False for an inf or nan float anywhere in ``value`` (numbers, lists, tuples)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(is_finite(item) for item in value)
    return True


# Numbers in scientific notation without a decimal point, e.g. 1e-3, 5E-5, -2e+3.
SCIENTIFIC_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint``, or raise TypeError/ValueError."""
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(value, option)
            except (TypeError, ValueError):
                continue
        raise TypeError(value)
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise ValueError(value)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            raise TypeError(value)
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        items = [coerce(item, item_hint) for item in value]
        return tuple(items) if origin is tuple or hint is tuple else items
    if hint is type(None):
        if value is None:
            return None
        raise TypeError(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(value)
    if hint is float:
        if isinstance(value, str) and SCIENTIFIC_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as text; the number is meant
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value) + 0.0  # -0.0 + 0.0 is 0.0: one spelling of zero
            except OverflowError:  # an int beyond float: refused as infinite (is_finite)
                return math.inf if value > 0 else -math.inf
        raise TypeError(value)
    if hint is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise TypeError(value)
    return value


def describe_type(hint: Any) -> str:
    """Human wording for a type hint: 'a number', 'one of 'batch', 'image''."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(option) for option in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    if origin in (list, tuple, typing.Sequence):
        args = typing.get_args(hint)
        return f"a list of {describe_type(args[0]).removeprefix('a ')}" if args else "a list"
    return {
        float: "a number",
        int: "a whole number",
        bool: "true or false",
        str: "a string",
        type(None): "none",
    }.get(hint, getattr(hint, "__name__", str(hint)))
