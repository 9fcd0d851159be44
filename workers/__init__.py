"""The service: Ray actors (`actors/`), the HTTP edge (`http/`), the CLI (`cli/`), and the core they share.

Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when it is imported; set to 0 it keeps every
Ray address on 127.0.0.1 (DESIGN §5), so it is set here, before any worker module imports Ray.
Set ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` yourself to join a multi-machine cluster.
"""

import os as _os

_os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
_os.environ.setdefault("RAY_AUTH_MODE", "disabled")
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
