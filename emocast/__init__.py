"""EmoCAST: emotional talking-portrait video from one image, speech and an emotive text prompt."""

__version__ = "0.1.0"

from . import compat as _compat

_compat.apply()  # before any third-party import of ours (see emocast/compat.py)
