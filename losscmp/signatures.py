"""A factory's signature read from its source file, without importing it.

The loss classes live in modules that import torch (seconds), yet ``losscmp losses``
and the parameter checks of ``losscmp run`` only need their ``__init__`` parameters:
names, defaults and types. Those are read here from the module's syntax tree. A
default must be a literal or a constant; an annotation may use builtins, names
imported from ``typing`` or ``collections.abc``, and names (type aliases, constants)
a losscmp module defines or imports from another one. Anything else raises
``Unreadable``, and the registry imports the factory instead: slower, never wrong.
``tests/test_losses_registry.py`` checks that every loss reads here as
``inspect.signature`` and ``typing.get_type_hints`` see it once imported.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any

# Modules whose names an annotation may use, imported for real (cheap, no side effects).
STANDARD_TYPING = frozenset({"typing", "collections.abc"})
PROJECT = "losscmp"


class Unreadable(Exception):
    """The source says something this reader does not evaluate: import the factory."""


@dataclass(frozen=True)
class StaticSignature:
    """What ``inspect.signature`` gives for the factory (annotations as the source spells
    them), and the parameters' annotations evaluated, as ``typing.get_type_hints``."""

    signature: inspect.Signature
    hints: dict[str, Any]


@functools.cache
def read_signature(path: str) -> StaticSignature:
    """The signature of ``"package.module:Name"``, a class (its ``__init__``, found
    through its bases) or a function, from its module's source."""
    module, _, name = path.partition(":")
    where, function, is_method = _callable(module, name)
    parameters = _parameters(where, function.args, skip_first=is_method)
    returns = ast.unparse(function.returns) if function.returns else inspect.Signature.empty
    hints = {
        parameter.name: _annotation(where, annotation)
        for parameter, annotation in zip(
            parameters, _annotations(function.args, is_method), strict=True
        )
        if annotation is not None
    }
    return StaticSignature(inspect.Signature(parameters, return_annotation=returns), hints)


@functools.cache
def _tree(module: str) -> ast.Module:
    if module != PROJECT and not module.startswith(PROJECT + "."):
        raise Unreadable(module)  # only losscmp's own sources are read
    spec = importlib.util.find_spec(module)
    if spec is None or not (spec.origin or "").endswith(".py"):
        raise Unreadable(module)
    with open(spec.origin, encoding="utf-8") as source:
        return ast.parse(source.read(), filename=spec.origin)


def _callable(module: str, name: str) -> tuple[str, ast.FunctionDef, bool]:
    """(module defining it, the function, whether it is a method): a function, or the
    ``__init__`` a class has or inherits through single inheritance."""
    where, node = _definition(module, name)
    if isinstance(node, ast.FunctionDef):
        return where, node, False
    if not isinstance(node, ast.ClassDef):
        raise Unreadable(f"{module}:{name}")
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
            return where, statement, True
    if len(node.bases) != 1 or not isinstance(node.bases[0], ast.Name):
        raise Unreadable(f"{module}:{name}")
    return _callable(where, node.bases[0].id)


def _definition(module: str, name: str) -> tuple[str, ast.AST]:
    """Where ``name`` is defined, following ``from losscmp... import name``: (module,
    the class, function, assigned value, or the ``alias`` it is imported as from a
    standard typing module)."""
    for statement in reversed(_tree(module).body):  # the last binding wins
        if isinstance(statement, ast.ClassDef | ast.FunctionDef) and statement.name == name:
            return module, statement
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in statement.targets
        ):
            return module, statement.value
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and statement.target.id == name
            and statement.value is not None
        ):
            return module, statement.value
        if isinstance(statement, ast.ImportFrom) and statement.level == 0:
            for alias in statement.names:
                if (alias.asname or alias.name) == name:
                    if statement.module in STANDARD_TYPING:
                        return statement.module, alias
                    return _definition(statement.module or "", alias.name)
    raise Unreadable(f"{module}: {name}")


def _parameters(module: str, arguments: ast.arguments, skip_first: bool) -> list:
    kinds = inspect.Parameter
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    only = len(arguments.posonlyargs)
    parameters = [
        kinds(
            argument.arg,
            kinds.POSITIONAL_ONLY if index < only else kinds.POSITIONAL_OR_KEYWORD,
            default=_default(module, default),
            annotation=_spelling(argument),
        )
        for index, (argument, default) in enumerate(zip(positional, defaults, strict=True))
    ]
    if arguments.vararg:
        vararg = arguments.vararg
        parameters.append(kinds(vararg.arg, kinds.VAR_POSITIONAL, annotation=_spelling(vararg)))
    parameters += [
        kinds(
            argument.arg,
            kinds.KEYWORD_ONLY,
            default=_default(module, default),
            annotation=_spelling(argument),
        )
        for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
    ]
    if arguments.kwarg:
        parameters.append(
            kinds(arguments.kwarg.arg, kinds.VAR_KEYWORD, annotation=_spelling(arguments.kwarg))
        )
    return parameters[1:] if skip_first else parameters


def _annotations(arguments: ast.arguments, skip_first: bool) -> list[ast.expr | None]:
    """The annotations in ``_parameters``' order."""
    every = [*arguments.posonlyargs, *arguments.args, arguments.vararg]
    every += [*arguments.kwonlyargs, arguments.kwarg]
    found = [argument.annotation for argument in every if argument is not None]
    return found[1:] if skip_first else found


def _spelling(argument: ast.arg) -> Any:
    """The annotation as ``inspect`` shows it under ``from __future__ import annotations``."""
    return ast.unparse(argument.annotation) if argument.annotation else inspect.Parameter.empty


def _default(module: str, node: ast.expr | None) -> Any:
    if node is None:
        return inspect.Parameter.empty
    if isinstance(node, ast.Name):  # a constant: its value where it is defined
        where, value = _definition(module, node.id)
        if not isinstance(value, ast.expr):
            raise Unreadable(f"{module}: default {node.id}")
        return _default(where, value)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise Unreadable(f"{module}: default {ast.unparse(node)}") from None


def _annotation(module: str, node: ast.expr) -> Any:
    """The annotation evaluated, each name it uses resolved as ``_definition`` finds it."""
    names = {found.id for found in ast.walk(node) if isinstance(found, ast.Name)}
    namespace = {name: _name_value(module, name) for name in names}
    code = compile(ast.Expression(node), f"<annotation in {module}>", "eval")
    return eval(code, {"__builtins__": {}}, namespace)


def _name_value(module: str, name: str) -> Any:
    try:
        where, node = _definition(module, name)
    except Unreadable:
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise
    if isinstance(node, ast.alias):  # from typing import Literal
        return getattr(importlib.import_module(where), node.name)
    if isinstance(node, ast.expr):  # an alias: Reduction = Literal["batch", "image"]
        return _annotation(where, node)
    raise Unreadable(f"{module}: {name}")
