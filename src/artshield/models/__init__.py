from .loader import ModelBundle, load_model, resolve_device

__all__ = ["ModelBundle", "load_model", "resolve_device"]
