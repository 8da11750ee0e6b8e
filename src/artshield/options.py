"""What every method family shares: config dataclasses with named overrides, one registry type,
and one factory.

Every method, whatever its family, has the same shape:

    method = make_method("protect", "advdm", bundle, budget=8)     # Method(bundle, Config(...))
    method.total_steps(len(images))                                 # progress units run reports
    out = method.run(inputs, generator=g, progress=callback)        # generator: every random draw

A family is a registry (`Registry`) filled one line per method with `@REGISTRY.register("name")`.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, fields
from typing import ClassVar

from .errors import ArtshieldError

# family -> (package, name of its registry there)
FAMILIES = {"protect": ("artshield.protect", "METHODS"), "purify": ("artshield.purify", "PURIFIERS"),
            "mimic": ("artshield.mimic", "MIMICS"), "erase": ("artshield.erase", "ERASERS"),
            "audit": ("artshield.audit", "AUDITS")}


@dataclass(frozen=True)
class Limit:
    """The accepted range of a numeric option: low <= value <= high (strict where open)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    unit: str = ""

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        left = "-inf" if self.low is None else f"{self.low:g}"
        right = "inf" if self.high is None else f"{self.high:g}"
        text = f"{'(' if self.low_open or self.low is None else '['}{left}, {right}" \
               f"{')' if self.high_open or self.high is None else ']'}"
        return f"{text} {self.unit}".rstrip()


POSITIVE = Limit(0, None, low_open=True)
AT_LEAST_ONE = Limit(1)
FRACTION = Limit(0, 1)
SEED = Limit(0, 2**63 - 1)          # what torch.Generator.manual_seed takes


class Overridable:
    """Mixin for config dataclasses: `Config.with_overrides(budget=8, steps=None)` keeps the defaults
    where a value is None and refuses names the config does not have.

    Every config checks its values when it is made (the one validation layer of every option, for
    the command line and the Python API alike): a field annotated bool, int, float or str gets a
    value of that type (an integral float is taken for an int), numbers are finite, and the fields
    named in `limits` lie in their range. A bad value is a ValueError naming the option, the value
    and what is accepted. Subclasses with their own __post_init__ call super().__post_init__()."""

    limits: ClassVar[dict[str, Limit]] = {}

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            kinds = {k.strip() for k in str(f.type).split("|")} - {"None"}
            if value is None and "None" in str(f.type):
                continue
            if kinds <= {"bool", "int", "float", "str"} and kinds:
                setattr(self, f.name, _checked(f.name, value, kinds, self.limits.get(f.name)))

    @classmethod
    def with_overrides(cls, **overrides):
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in names)
        if unknown:
            raise ValueError(f"unknown option(s) for this method: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(names))})")
        return cls(**{k: v for k, v in overrides.items() if v is not None})


def _checked(name: str, value, kinds: set[str], limit: Limit | None):
    if "str" in kinds:
        if isinstance(value, str):
            return value
        if kinds == {"str"}:
            raise ValueError(f"{name} must be text, not {value!r}")
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, not {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        wanted = " or ".join(sorted(kinds))
        raise ValueError(f"{name} must be a number ({wanted}), not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if "int" in kinds and "float" not in kinds:
        if float(value) != int(value):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        value = int(value)
    if limit is not None and not limit.admits(value):
        raise ValueError(f"{name} must be in {limit.describe()}, not {value!r}")
    return value


class Registry(dict):
    """The methods of one family by name."""

    def __init__(self, family: str):
        super().__init__()
        self.family = family

    def register(self, name: str):
        """Class decorator: sets cls.name and files the class under `name`."""
        def wrap(cls):
            cls.name = name
            self[name] = cls
            return cls
        return wrap

    def config(self, name: str, **options):
        """Method `name`'s config with `options`, checked, without building the method (no model needed)."""
        if name not in self:
            raise ArtshieldError(f"unknown {self.family} method; choose one of {', '.join(self)}",
                                 param="method", value=name)
        return self[name].Config.with_overrides(**options)

    def create(self, name: str, bundle=None, **options):
        """The method `name` built on `bundle` with its config's defaults overridden by `options`."""
        if name not in self:
            raise ArtshieldError(f"unknown {self.family} method; choose one of {', '.join(self)}",
                                 param="method", value=name)
        cls = self[name]
        return cls(bundle, cls.Config.with_overrides(**options))


def registry(family: str) -> Registry:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    package, attribute = FAMILIES[family]
    return getattr(importlib.import_module(package), attribute)


def make_method(family: str, name: str, bundle=None, **options):
    """The one factory: method `name` of `family` (protect, purify, mimic, erase, audit)."""
    return registry(family).create(name, bundle, **options)


def seeded(generator, seed: int = 0):
    """`generator`, or a CPU generator seeded with `seed` when none is given."""
    import torch

    return generator if generator is not None else torch.Generator("cpu").manual_seed(seed)


def parse_assignments(pairs: list[str]) -> dict:
    """"key=value" texts as options: values read as JSON where they can be (numbers, true, null,
    lists), else kept as text; dashes in keys become underscores. A text without "=" is refused."""
    import json

    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ArtshieldError("expected key=value", param="option", value=pair)
        try:
            parsed[key.replace("-", "_")] = json.loads(value)
        except ValueError:
            parsed[key.replace("-", "_")] = value
    return parsed
