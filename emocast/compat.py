"""Compatibility shims between third-party packages we pin together, applied when ``emocast`` is imported.

- protobuf >= 5 removed ``MessageFactory.GetPrototype``; mediapipe 0.10.21's C++ proto bridge still calls it
  when its extension loads. Without it the bridge fails to initialise (it prints ``AttributeError:
  'MessageFactory' object has no attribute 'GetPrototype'``) and every Tasks-API call that passes a proto, such
  as ``FaceLandmarker.create_from_options`` for the ``.task`` landmark model, raises ``TypeError: create():
  incompatible function arguments``. We need protobuf 6 (onnx), so we restore the old method as the alias of
  ``message_factory.GetMessageClass`` it was. This must happen before mediapipe is first imported, hence here.
"""
from __future__ import annotations


def restore_protobuf_get_prototype() -> bool:
    """Add ``MessageFactory.GetPrototype`` when protobuf lacks it; True if it is available afterwards."""
    try:
        from google.protobuf import message_factory
    except ImportError:  # protobuf is only needed by the preprocessing extras
        return False
    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = (
            lambda self, descriptor: message_factory.GetMessageClass(descriptor))
    return True


def apply() -> None:
    restore_protobuf_get_prototype()
