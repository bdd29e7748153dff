"""What a config value may be: small declarative rules (a type, a range, a closed set, a file).

A rule checks one value and, when it is wrong, raises a one-line
:class:`~diffzoo.errors.ConfigError` naming the key, the value and what is valid::

    Int(lo=1).check("n", "abc")   # ConfigError: n='abc' is impossible: it must be an integer >= 1

The entry points' tables of rules are in :mod:`diffzoo.validation.schemas`; tests walk them (and
the composed configs) to feed every key bad values, so the rules expose their bounds and choices.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import ConfigError

__all__ = ["Rule", "Int", "Float", "Bool", "Choice", "Text", "File", "Folder", "ListOf", "Either", "Mapping", "Pattern", "Checked",
           "plain"]


def plain(value: Any) -> Any:
    """An OmegaConf list / mapping as a plain Python container (scalars unchanged)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    """An int or float, not a bool, not NaN (infinity is a number: EDM's S_tmax = inf)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and not math.isnan(v)


@dataclass(frozen=True)
class Rule:
    """Base rule: ``null`` says whether ``None`` is valid. Subclasses define :meth:`problem`."""

    null: bool = field(default=False, kw_only=True)

    @property
    def what(self) -> str:
        """What is valid, in words (ends every message)."""
        raise NotImplementedError

    def valid_text(self) -> str:
        return self.what + (", or null" if self.null else "")

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` (not ``None``) is valid, else the message after ``key=value``."""
        raise NotImplementedError

    def check(self, key: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming ``key`` when ``value`` is invalid."""
        value = plain(value)
        if value is None:
            if self.null:
                return
            raise ConfigError(f"{key}=null is impossible: it must be {self.valid_text()}")
        problem = self.problem(value)
        if problem is not None:
            raise ConfigError(f"{key}={self.show(value)}{'' if problem.startswith(':') else ' '}{problem}")

    def show(self, value: Any) -> str:
        return repr(value)

    def _impossible(self) -> str:
        return f"is impossible: it must be {self.valid_text()}"


@dataclass(frozen=True)
class Int(Rule):
    """An integer in ``[lo, hi]`` (either bound may be open-ended), or one of ``also`` (e.g. -1)."""

    lo: int | None = None
    hi: int | None = None
    also: tuple = ()
    words: str | None = None

    @property
    def what(self) -> str:
        if self.words:
            return self.words
        if self.lo == 1 and self.hi is None:
            base = "a positive integer"
        elif self.lo is not None and self.hi is not None:
            base = f"an integer in [{self.lo}, {self.hi}]"
        elif self.lo is not None:
            base = f"an integer >= {self.lo}"
        elif self.hi is not None:
            base = f"an integer <= {self.hi}"
        else:
            base = "an integer"
        return base + "".join(f", or {a}" for a in self.also)

    def problem(self, value):
        if value in self.also and _is_int(value):
            return None
        if not _is_int(value) or (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            return self._impossible()
        return None


@dataclass(frozen=True)
class Float(Rule):
    """A number (not NaN) in the interval from ``lo`` to ``hi`` (``lo_open`` / ``hi_open`` exclude the ends)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    words: str | None = None

    @property
    def what(self) -> str:
        if self.words:
            return self.words
        if self.lo is not None and self.hi is not None:
            return f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"a number {'<' if self.hi_open else '<='} {self.hi:g}"
        return "a number"

    def problem(self, value):
        if not _is_number(value):
            return self._impossible()
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return self._impossible()
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return self._impossible()
        return None


@dataclass(frozen=True)
class Bool(Rule):
    """``true`` or ``false``."""

    @property
    def what(self) -> str:
        return "true or false"

    def problem(self, value):
        return None if isinstance(value, bool) else self._impossible()


@dataclass(frozen=True)
class Choice(Rule):
    """One value of a closed set."""

    values: tuple = ()

    @property
    def what(self) -> str:
        return f"one of {list(self.values)}"

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value not in self.values:
            return f"is not one of {list(self.values)}" + (" (or null)" if self.null else "")
        return None


@dataclass(frozen=True)
class Text(Rule):
    """A non-empty string (a name, a label); ``words`` says what it names."""

    words: str = "a non-empty string"
    empty: bool = False

    @property
    def what(self) -> str:
        return self.words

    def problem(self, value):
        return None if isinstance(value, str) and (self.empty or value.strip()) else self._impossible()


@dataclass(frozen=True)
class File(Rule):
    """An existing regular file (``also``: words allowed instead, e.g. ``last``)."""

    words: str = "an existing file"
    also: tuple = ()
    missing: str = "no such file"

    @property
    def what(self) -> str:
        return self.words + "".join(f", or {a}" for a in self.also)

    def show(self, value):
        return str(value)

    def problem(self, value):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            return self._impossible()
        if value in self.also:
            return None
        path = Path(value).expanduser()
        if path.is_dir():
            return f": is a directory, not a file; it must be {self.valid_text()}"
        if not path.is_file():
            return f": {self.missing}; it must be {self.valid_text()}"
        return None


@dataclass(frozen=True)
class Folder(Rule):
    """A folder path (``exists``: it must exist already; else it is created when missing, so it only
    must not be an existing file)."""

    exists: bool = False
    words: str | None = None

    @property
    def what(self) -> str:
        return self.words or ("an existing folder" if self.exists else "a folder (created if missing)")

    def show(self, value):
        return str(value)

    def problem(self, value):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            return self._impossible()
        path = Path(value).expanduser()
        if path.is_file():
            return f": is a file, not a folder; it must be {self.valid_text()}"
        if self.exists and not path.is_dir():
            return f": no such folder; it must be {self.valid_text()}"
        return None


@dataclass(frozen=True)
class ListOf(Rule):
    """A list whose items each meet ``item`` (``nonempty``, ``distinct`` as said)."""

    item: Rule = field(default_factory=Int)
    nonempty: bool = True
    distinct: bool = False

    @property
    def what(self) -> str:
        return (f"a {'non-empty ' if self.nonempty else ''}list of {'distinct ' if self.distinct else ''}items, "
                f"each {self.item.valid_text()}")

    def problem(self, value):
        if not isinstance(value, (list, tuple)) or (self.nonempty and not value):
            return self._impossible()
        for v in value:
            if v is None and self.item.null:
                continue
            if v is None or self.item.problem(v) is not None:
                return f"is impossible: the item {self.item.show(v) if v is not None else 'null'} is not valid; it must be {self.valid_text()}"
        if self.distinct and len({repr(v) for v in value}) != len(value):
            return f"is impossible: an item appears twice; it must be {self.valid_text()}"
        return None


@dataclass(frozen=True)
class Checked(Rule):
    """A key whose value is checked elsewhere, before anything is built (``by`` names where: a
    sampler's option by :class:`~diffzoo.samplers.SamplerSpec`, a Hydra group by Hydra). It stays
    in the table so that the walk over the config knows the key was considered."""

    by: str = ""

    @property
    def what(self) -> str:
        return f"(checked by {self.by})"

    def problem(self, value):
        return None

    def check(self, key: str, value: Any) -> None:
        return None


@dataclass(frozen=True)
class Either(Rule):
    """A value that meets one of ``options`` (e.g. one class label or a list of them)."""

    options: tuple = ()

    @property
    def what(self) -> str:
        return " or ".join(o.what for o in self.options)

    def problem(self, value):
        return None if any(o.problem(value) is None for o in self.options) else self._impossible()


@dataclass(frozen=True)
class Mapping(Rule):
    """A mapping that has the keys ``required`` (its own entries are checked where it is used)."""

    required: tuple = ()

    @property
    def what(self) -> str:
        return "a mapping" + (f" with {', '.join(self.required)}" if self.required else "")

    def problem(self, value):
        return None if isinstance(value, dict) and all(k in value for k in self.required) else self._impossible()


@dataclass(frozen=True)
class Pattern(Rule):
    """A string matching the regular expression ``regex`` in full; ``words`` says what it means."""

    regex: str = ".*"
    words: str = "a string"

    @property
    def what(self) -> str:
        return self.words

    def problem(self, value):
        import re

        return None if isinstance(value, str) and re.fullmatch(self.regex, value) else self._impossible()
