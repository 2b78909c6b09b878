"""Parse spec strings: ``dice,focal(gamma=1),tversky(alpha=0.3,beta=0.7)``.

The same syntax names losses, datasets (``synthetic(fg_fraction=0.02)``,
``folder:PATH``) and model presets. Values are read as Python-ish literals:
ints, floats, ``true``/``false``, ``none``/``null``, quoted or bare strings and
``[a, b]`` lists. A spec's canonical text (``Spec.label``) is stable, so it can
key results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from losscmp.errors import SpecError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
# A selector stands for several registered names, chosen once the registry (and, for
# losses, the dataset's mode) is known: ``all``, or an fnmatch pattern such as ``*dice*``.
ALL = "all"
WILDCARDS = frozenset("*?[")


@dataclass(frozen=True)
class Spec:
    """A registry name plus the parameters the user gave for it."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Canonical text, e.g. ``focal(gamma=1.0)``; just the name without parameters."""
        if not self.params:
            return self.name
        inner = ",".join(f"{key}={format_value(value)}" for key, value in self.params.items())
        return f"{self.name}({inner})"

    def __str__(self) -> str:
        return self.label


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, str) and _needs_quotes(value):
        return _quote(value)
    return str(value)


def _quote(text: str) -> str:
    """Quoted so that ``parse_value`` reads it back: in the quote the text lacks, else in
    single quotes with each ``'`` doubled (as in SQL). A backslash is never special, so a
    Windows path reads as typed (``'C:\\new\\data'`` holds no newline)."""
    for quote in "'\"":
        if quote not in text:
            return quote + text + quote
    return "'" + text.replace("'", "''") + "'"


def _needs_quotes(text: str) -> bool:
    """Whether the bare text would read back as something else (a split, a number, a
    stripped space, an escape sequence)."""
    return (
        bool(set(text) & set(",()[]=' \"")) or not text.isprintable() or _looks_like_literal(text)
    )


def _looks_like_literal(text: str) -> bool:
    return parse_value(text) != text


def _closing_quote(text: str, start: int) -> int:
    """Index of the quote that closes the one at ``text[start]``, -1 if none; the quote
    doubled stands for itself, as ``_quote`` writes it."""
    quote, index = text[start], start + 1
    while index < len(text):
        if text[index] == quote:
            if text[index + 1 : index + 2] != quote:
                return index
            index += 1
        index += 1
    return -1


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts: list[str] = []
    depth, start, index = 0, 0, 0
    while index < len(text):
        char = text[index]
        if char in "'\"":
            index = _closing_quote(text, index)
            if index < 0:
                raise SpecError(f"unclosed quote in '{text}'")
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ')' in '{text}'")
        elif char == sep and depth == 0:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    if depth:
        raise SpecError(f"unclosed '(' or '[' in '{text}'")
    parts.append(text[start:])
    return parts


def parse_value(text: str) -> Any:
    """Read one parameter value; unknown words stay strings."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    if lowered in ("none", "null"):
        return None
    if text[:1] in ("'", '"') and _closing_quote(text, 0) == len(text) - 1:
        return _unquote(text)
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(item) for item in split_top_level(inner)] if inner else []
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _unquote(text: str) -> str:
    """The inverse of ``_quote``: the outer quotes off, a doubled quote made single."""
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def parse_spec(text: str) -> Spec:
    """Parse ``name`` or ``name(key=value, ...)``; ``folder:PATH`` is ``folder(path=PATH)``."""
    text = text.strip()
    if not text:
        raise SpecError("empty name in spec")
    prefix, colon, rest = text.partition(":")
    if colon and _NAME.match(prefix) and "(" not in prefix:
        return Spec(prefix, {"path": rest})
    if "(" not in text:
        if not _NAME.match(text):
            raise SpecError(f"'{text}' is not a valid name")
        return Spec(text)
    name, _, inner = text.partition("(")
    name = name.strip()
    if not inner.endswith(")"):
        raise SpecError(f"'{text}' must end with ')'")
    if not _NAME.match(name):
        raise SpecError(f"'{name}' is not a valid name in '{text}'")
    params: dict[str, Any] = {}
    for item in split_top_level(inner[:-1]):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not _NAME.match(key):
            raise SpecError(f"parameter '{item.strip()}' in '{text}' must look like key=value")
        if key in params:
            raise SpecError(f"parameter '{key}' given twice in '{text}'")
        params[key] = parse_value(value)
    return Spec(name, params)


def comma_hint(text: Any) -> str:
    """A did-you-mean for names (or specs) of a list separated by spaces or semicolons, not
    commas."""
    parts = [part for part in re.split(r"[;\s]+", text) if part] if isinstance(text, str) else []
    if len(parts) > 1 and all(_is_spec(part) for part in parts):
        return f" (a list is separated by commas: did you mean '{','.join(parts)}'?)"
    return ""


def _is_spec(text: str) -> bool:
    try:
        parse_spec(text)
    except SpecError:
        return False
    return True


def bracketed_parameters(text: str) -> tuple[str, str] | None:
    """A name and its parameters written in square brackets (``focal[gamma=1]``), which
    fnmatch reads as a character class, as ``('focal', 'gamma=1')``; else None."""
    found = re.fullmatch(r"(\w+)\[(.*=.*)\]", text)
    return (found[1], found[2]) if found else None


def name_before_parameters(text: str) -> str | None:
    """The name a spec's text gives before its parameters, in parentheses
    (``focal(gamma=1)``) or in brackets (``focal[gamma=1]``), as ``'focal'``; else None."""
    bracketed = bracketed_parameters(text)
    name, parenthesis, _ = text.partition("(")
    if bracketed:
        return bracketed[0]
    return name.strip() if parenthesis else None


def split_spec_list(text: str) -> list[str]:
    """The items of a comma-separated list of specs, each a spec or a selector (``all``,
    ``*dice*``), blank ones dropped; duplicates are the planner's to judge: only the
    registry knows that ``tversky`` and ``tversky(alpha=0.3)`` are one loss."""
    items = [part for part in split_top_level(text) if part.strip()]
    if not items:
        raise SpecError("no names given")
    return items


def selector_name(value: str | Spec | dict) -> str | None:
    """The selector (``all`` or a pattern, lower case: names are) that ``value`` is, or None
    for one name. A selector names no parameters: they belong to one factory's signature."""
    if isinstance(value, Spec):
        return None
    if isinstance(value, dict):
        name, has_params = value.get("name"), len(value) > 1
    elif isinstance(value, str):
        name, _, rest = value.strip().partition("(")
        has_params = bool(rest)
    else:
        return None
    if not isinstance(name, str) or not is_selector(name.strip()):
        return None
    selector = name.strip().lower()
    if has_params:
        raise SpecError(
            f"'{selector}' stands for several names and takes no parameters; "
            "give them to one name at a time, as in name(key=value)"
        )
    return selector


def is_selector(text: str) -> bool:
    """Whether ``text`` is ``all`` or holds a wildcard."""
    return text.lower() == ALL or bool(set(text) & WILDCARDS)


def as_spec(value: str | Spec | dict) -> Spec:
    """Accept a spec string, a Spec, or a YAML mapping ``{name: ..., **params}``."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, dict):
        params = dict(value)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise SpecError(f"entry {value!r} needs a 'name'")
        return Spec(name, params)
    if isinstance(value, str):
        return parse_spec(value)
    raise SpecError(f"cannot read {value!r} as a name with parameters")
