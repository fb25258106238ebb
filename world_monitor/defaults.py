"""Where the shipped default artefacts live.

The default monitor bundle is trained by the project's own command on the default simulated
dataset (the exact command and seed are in its manifest.json and in README.md) and ships inside
the package, so `replay`, `evaluate` and the demo work on a fresh machine without training.
It knows only the built-in simulator: a real robot needs a bundle trained on its own data.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_BUNDLE", "default_bundle"]

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "bundles" / "default"


def default_bundle() -> Path:
    """The shipped bundle's directory; FileNotFoundError with a fix if it is missing."""
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        raise FileNotFoundError(
            f"the default bundle is missing from {DEFAULT_BUNDLE}; reinstall the package or "
            "train one with `world-monitor train` and pass --bundle"
        )
    return DEFAULT_BUNDLE
