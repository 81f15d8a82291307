"""ComfyUI entry point of the h-space node pack.

ComfyUI imports this folder as a package: the nodes live in ``nodes/`` (thin adapters) and call the
standalone engine ``hspace_core``, which sits next to them. When the pack was cloned into
custom_nodes rather than pip-installed, its folder is appended to the import path (at the end, so
that no name here can shadow ComfyUI's own modules, such as its ``nodes``).
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    import hspace_core  # noqa: F401  (pip-installed, or already importable)
    import hspace_sdworld  # noqa: F401
except ImportError:
    sys.path.append(_here)

if __package__:
    from .nodes.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:
    # Imported as a lone module, not as a package: pytest does this when the checkout's folder name
    # is not a valid package name (a clone into "/tmp/ci.1234"); there is nothing to register then.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

# Served by ComfyUI under /extensions/<pack folder>/: the node library's help pages (docs/<node id>.md and
# their pictures in docs/images/). A plain string, so the pack imports without ComfyUI.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
