"""EmoCAST: emotional talking-portrait video from one image, speech and an emotive text prompt.

The Python API::

    from emocast import EmoCASTPipeline

    pipe = EmoCASTPipeline.from_pretrained("pretrained_models")
    video = pipe("me.png", "speech.wav", "A person is talking with happy emotion.")
    video.save("out.mp4")

Importing ``emocast`` is cheap: the names below are imported on first use (torch, diffusers and the face models
load only then).
"""

__version__ = "0.1.0"

#: public name -> the module that owns it (imported on first access)
_API = {
    "EmoCASTPipeline": "emocast.pipelines.inference",
    "RenderedVideo": "emocast.pipelines.rendered",
    "RenderProgress": "emocast.pipelines.rendered",
    "InferenceConfig": "emocast.pipelines.config",
    "EmoCASTError": "emocast.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'emocast' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
