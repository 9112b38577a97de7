"""``latenthdr view``: a local web page that shows linear HDR files, tone-mapped in the browser.

``server.py`` serves the named files' float pixels and metadata on 127.0.0.1; ``index.html``, ``viewer.js``
(controls, histogram, pixel read-out) and ``render.js`` (the WebGL 2 fragment shader: exposure, tone mappers,
false colour, equirectangular look-around) are the page. No script or style comes from elsewhere.
"""

from latenthdr.viewer.server import (FOV_RANGE_DEG, OPERATORS, ViewedFile, ViewerServer, ViewSettings,
                                     check_view_settings, file_meta, load_file, luminance_stats, pixel_payload)

__all__ = ["FOV_RANGE_DEG", "OPERATORS", "ViewedFile", "ViewerServer", "ViewSettings", "check_view_settings",
           "file_meta", "load_file", "luminance_stats", "pixel_payload"]
