"""The registered claims, one module per family of papers; importing this package registers them all."""

from . import full_scale, guidance, images, text_to_image, toys  # noqa: F401
from . import cascades  # noqa: F401
