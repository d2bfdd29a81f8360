"""EmoCAST: emotional talking-portrait video from one image, speech and an emotive text prompt."""

__version__ = "0.1.0"
