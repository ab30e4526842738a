"""headshot's contract: typed records, explicit pyarrow schemas, and the workspace
(content-addressed blob store, Parquet manifest tables, immutable dataset versions).

This package imports no Scrapy, Prefect, torch or web framework; every other package imports it.
"""

from .blobs import BlobStore, sha256_hex
from .records import (
    ALL_RECORDS, DatasetRow, DupGroup, FaceCrop, FilterResult, HashRecord, Record, Review,
    SCHEMA_VERSION, ScrapedImage, StoredImage,
)
from .workspace import Workspace, WorkspaceBusy, new_run_id, resolve_home, utcnow

__all__ = [
    "ALL_RECORDS", "BlobStore", "DatasetRow", "DupGroup", "FaceCrop", "FilterResult", "HashRecord",
    "Record", "Review", "SCHEMA_VERSION", "ScrapedImage", "StoredImage", "Workspace", "WorkspaceBusy",
    "new_run_id", "resolve_home", "sha256_hex", "utcnow",
]
