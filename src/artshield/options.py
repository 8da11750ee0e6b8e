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
from dataclasses import fields

from .errors import ArtshieldError

# family -> (package, name of its registry there)
FAMILIES = {"protect": ("artshield.protect", "METHODS"), "purify": ("artshield.purify", "PURIFIERS"),
            "mimic": ("artshield.mimic", "MIMICS"), "erase": ("artshield.erase", "ERASERS"),
            "audit": ("artshield.audit", "AUDITS")}


class Overridable:
    """Mixin for config dataclasses: `Config.with_overrides(budget=8, steps=None)` keeps the defaults
    where a value is None and refuses names the config does not have."""

    @classmethod
    def with_overrides(cls, **overrides):
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in names)
        if unknown:
            raise ValueError(f"unknown option(s) for this method: {', '.join(unknown)}")
        return cls(**{k: v for k, v in overrides.items() if v is not None})


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
