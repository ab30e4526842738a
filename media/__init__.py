"""One image's bytes, wherever they came from: decode and validate them (`decode`), store them
as a blob and a StoredImage row (`store`), and the web rules every fetch of them obeys
(`optout`, `web`). The spiders and the curation stages both use this package; it imports
only `manifests`, Pillow and numpy.
"""
