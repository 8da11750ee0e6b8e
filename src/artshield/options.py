"""Method configs: dataclasses of documented defaults, overridden by name from the CLI or the API."""
from __future__ import annotations

from dataclasses import fields


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


def registrar(table: dict):
    """A class decorator factory: @register("name") sets cls.name and files the class in `table`."""
    def register(name: str):
        def wrap(cls):
            cls.name = name
            table[name] = cls
            return cls
        return wrap
    return register
