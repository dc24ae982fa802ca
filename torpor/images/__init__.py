"""torpor's image format: CRIU-compatible image files in a directory, with integrity checks.

- :mod:`torpor.images.pb`: the protobuf messages (generated from ``proto/*.proto`` by
  scripts/gen-protos.sh); ``pb.CoreEntry`` or ``pb.core_pb2.CoreEntry``.
- :mod:`torpor.images.constants`: magics, IMG_VERSION, VMA_* status bits, PE_* pagemap flags,
  TASK_* states.
- :class:`ImageDir`: write, read, commit and verify an image directory.
- :mod:`torpor.images.kinds`: which file name is which kind of image.
- :mod:`torpor.images.digest`: the content digest recorded for every file.

The format is CRIU's, so crit and CRIU can read torpor's images; torpor adds only a list of
file digests in a field of inventory.img that CRIU ignores.
"""

from torpor.images import constants, pb
from torpor.images.constants import IMG_VERSION
from torpor.images.imagedir import INVENTORY, ImageDir, PagesWriter
from torpor.images.kinds import KINDS, ImageKind, kind_of

__all__ = [
    "IMG_VERSION",
    "INVENTORY",
    "KINDS",
    "ImageDir",
    "ImageKind",
    "PagesWriter",
    "constants",
    "kind_of",
    "pb",
]
