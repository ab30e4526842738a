"""Which crops the present settings make: decided here and nowhere else.

Crops of other settings stay on disk and in the crops table (a setting changed back costs
nothing), so every reader of crops (the process stage's planner and near-duplicate pass, the
review queue, dataset builds, `headshot status`) asks this module which rows are current.
A crop is current when every setting that shapes its pixels matches: the detector's
parameters, the margin, the size and the border policy (`pad`), and what it is centred on
(`subject`: under `auto` an image's whole-picture fallback crop is current beside the face
crops of the same detectors; under `whole` only whole-picture crops are). The latest process run
records its settings in the workspace's selection file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from manifests import tables
from manifests.atomic import write_bytes_atomic
from manifests.records import FaceCrop
from manifests.workspace import Workspace

from .subject import fallback_params, whole_params

# What the crops table held before `pad` was a column: crops made with the default policy.
LEGACY_PAD = "shift"
COLUMNS = ("detector_params", "margin", "size", "pad")


@dataclass(frozen=True)
class CropSettings:
    """Every setting that shapes a crop's pixels."""

    detector_params: str  # under `whole`, the whole-picture rule's (curation/subject.py)
    margin: float
    size: int
    pad: str = LEGACY_PAD
    subject: str = "faces"

    @classmethod
    def of(cls, cfg) -> "CropSettings":
        """From a ProcessConfig."""
        params = whole_params() if cfg.subject == "whole" else cfg.detector.params_json()
        return cls(params, float(cfg.crop.margin), int(cfg.crop.size), cfg.crop.pad, cfg.subject)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CropSettings":
        return cls(d["detector_params"], float(d["margin"]), int(d["size"]), d.get("pad") or LEGACY_PAD,
                   d.get("subject") or "faces")

    def as_dict(self) -> dict[str, Any]:
        return {"detector_params": self.detector_params, "margin": self.margin, "size": self.size, "pad": self.pad,
                "subject": self.subject}

    def makes_params(self, detector_params: str) -> bool:
        """Whether crops with these detector parameters are of these settings' detectors (any margin or size)."""
        return detector_params == self.detector_params or (
            self.subject == "auto" and detector_params == fallback_params(self.detector_params))

    def makes(self, detector_params: str, margin: float, size: int, pad: str | None = None) -> bool:
        """Whether a crop made with these settings is one these settings make (margins are float32 in Parquet)."""
        return (self.makes_params(detector_params) and abs(float(margin) - self.margin) < 1e-6
                and int(size) == self.size and (pad or LEGACY_PAD) == self.pad)

    def makes_row(self, row: dict[str, Any]) -> bool:
        return self.makes(row["detector_params"], row["margin"], row["size"], row.get("pad"))


def read_selection(ws: Workspace) -> CropSettings | None:
    """The settings of the latest process run (None before the first)."""
    try:
        return CropSettings.from_dict(json.loads(ws.selection_file.read_text()))
    except FileNotFoundError:
        return None


def write_selection(ws: Workspace, settings: CropSettings, config: dict[str, Any] | None = None,
                    **extra: Any) -> None:
    """Remember which crops the latest run's settings make. A rerun on the same settings writes nothing."""
    doc = {**settings.as_dict(), "config": config or {}, **extra}
    data = json.dumps(doc, indent=1, default=str, sort_keys=True).encode()
    path = ws.selection_file
    if not path.exists() or path.read_bytes() != data:
        write_bytes_atomic(path, data)


def selected(ws: Workspace, crops: dict[str, list] | None = None, settings: CropSettings | None = None
             ) -> list[int]:
    """Indexes of the current crops in `crops` (columns of the crops table, read here when None).

    `settings`: the settings to select by (default: the workspace's selection; a workspace
    processed before there was one: its latest crop's settings)."""
    if crops is None:
        crops = _columns(tables.read_table(ws, FaceCrop, list(COLUMNS)))
    if not crops["detector_params"]:
        return []
    if settings is None:
        settings = read_selection(ws)
    if settings is None:
        last = len(crops["detector_params"]) - 1
        settings = CropSettings(crops["detector_params"][last], float(crops["margin"][last]), int(crops["size"][last]),
                                crops["pad"][last] or LEGACY_PAD)
    return [i for i, (p, m, s, d) in enumerate(zip(*(crops[c] for c in COLUMNS))) if settings.makes(p, m, s, d)]


def current_crops(ws: Workspace, settings: CropSettings | None = None,
                  columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The crop rows the settings make (default: the workspace's selection)."""
    want = None if columns is None else list(dict.fromkeys([*columns, *COLUMNS]))
    table = tables.read_table(ws, FaceCrop, want)
    cols = _columns(table)
    keep = selected(ws, cols, settings)
    names = table.column_names
    return [{n: cols[n][i] for n in names} for i in keep]


def _columns(table) -> dict[str, list]:
    return {name: table.column(name).to_pylist() for name in table.column_names}
