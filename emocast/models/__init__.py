"""The EmoCAST networks (issue 3): our own code on diffusers building blocks. See docs/models.md."""
from .configs import SD15, TINY, NetConfig, from_unet_config, parity_config, resolve_config
from .denoising_unet import DenoisingUNet
from .face_locator import FaceLocator
from .net import EmoCASTNet, build_net
from .projections import AudioProj, ImageProj
from .reference_net import ReferenceFeatures, ReferenceNet

__all__ = [
    "SD15", "TINY", "NetConfig", "from_unet_config", "parity_config", "resolve_config",
    "EmoCASTNet", "build_net", "ReferenceNet", "ReferenceFeatures", "DenoisingUNet", "FaceLocator",
    "ImageProj", "AudioProj",
]
