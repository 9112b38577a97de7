"""Models: latent codecs (VAE adapters), the exposure head, and our own small networks.

Models import no training or CLI code; diffusers is imported lazily inside the codec adapters.
"""

from latenthdr.models.codecs import (
    DiffusersKLCodec,
    Flux2Codec,
    LatentCodec,
    TinyCodec,
    decode_bracket,
    encode_bracket,
    load_codec,
)
from latenthdr.models.head import HEAD_PRESETS, ExposureHead, HeadConfig, load_head, save_head

__all__ = [
    "LatentCodec", "DiffusersKLCodec", "Flux2Codec", "TinyCodec", "load_codec", "encode_bracket",
    "decode_bracket", "ExposureHead", "HeadConfig", "HEAD_PRESETS", "load_head", "save_head",
]
