"""AVCaption: the `avcaption` CLI and the all-in-one wiring of every component."""

import importlib.metadata

try:
    __version__ = importlib.metadata.version("avcaption")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
