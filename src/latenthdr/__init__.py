"""latenthdr: linear HDR images and HDR panoramas with the LatentHDR method.

One scene latent -> exposure head (one batched pass) -> dense bracket -> VAE decode -> radiometric
merge -> linear HDR. See docs/ and ../shared/docs/METHOD.md for the method.

Heavy dependencies (diffusers, transformers) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"

from latenthdr.errors import LatentHDRError, InputError  # noqa: E402

__all__ = ["__version__", "LatentHDRError", "InputError"]
