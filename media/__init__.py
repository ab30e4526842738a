"""One image's bytes, wherever they came from: decode and validate them (`decode`), store them
as a blob and a StoredImage row (`store`), and the web rules every fetch of them obeys
(`optout`, `web`), and the image features (`features`: EfficientNet-Lite0, one definition for
the curation stages and the training metrics). The spiders, the curation stages and training
use this package; it imports only `manifests`, Pillow and numpy (and torch, in `features`).
"""
