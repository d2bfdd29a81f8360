"""The EmoCAST networks (issue 3): our own code on diffusers building blocks. See docs/models.md."""
from .configs import SD15, TINY, NetConfig, from_unet_config, parity_config, resolve_config
from .denoising_unet import DenoisingUNet
from .face_locator import FaceLocator
from .loading import init_from_pretrained, load_net, load_safetensors, save_safetensors
from .net import EmoCASTNet, build_net
from .parameter_groups import set_trainable, trainable_parameter_groups
from .projections import AudioProj, ImageProj
from .reference_net import ReferenceFeatures, ReferenceNet

__all__ = [
    "SD15", "TINY", "NetConfig", "from_unet_config", "parity_config", "resolve_config",
    "EmoCASTNet", "build_net", "ReferenceNet", "ReferenceFeatures", "DenoisingUNet", "FaceLocator",
    "ImageProj", "AudioProj", "load_net", "init_from_pretrained", "save_safetensors", "load_safetensors",
    "trainable_parameter_groups", "set_trainable",
]
