"""Method names of every family, as static tables: the command line lists and checks them without
importing torch, diffusers or transformers. tests/test_layers.py checks that each table equals its
family's registry, so a new method cannot be forgotten here."""

PROTECT = ("advdm", "mist", "sds", "sds-minus", "photoguard", "glaze", "aspl", "ace", "metacloak", "robust")
PURIFY = ("bilateral", "jpeg", "gaussian-noise", "gaussian-blur", "median", "noisy-redraw", "noisy-upscale", "diffpure",
          "impress", "denoiser")
MIMIC = ("lora", "textual-inversion", "dreambooth", "hypernetwork")
ERASE = ("esd-x", "esd-u", "esd-x-strict", "uce", "rece", "advunlearn")
ERASE_ATTACKS = ("concept-inversion", "ring-a-bell", "unlearndiffatk", "p4d", "random-prefix")
AUDIT = ("extract", "detect", "anisotropy", "consensus")
BENCH_PRESETS = ("model-quality", "smoke", "quick", "standard", "mimics", "adaptive", "full")

FAMILIES = {"protect": PROTECT, "purify": PURIFY, "mimic": MIMIC, "erase": ERASE, "audit": AUDIT}
