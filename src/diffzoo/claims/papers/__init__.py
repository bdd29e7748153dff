"""The registered claims, one module per family of papers; importing this package registers them all."""

from . import cascades, full_scale, guidance, images, latent, text_to_image, toys, unclip  # noqa: F401
