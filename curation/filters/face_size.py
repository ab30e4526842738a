"""face_size: the shorter side of the face box, in source pixels."""

from __future__ import annotations

from .base import FACE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig


@register
class FaceSize(Filter):
    name = "face_size"
    version = "1"
    reads = ("min_face_side", "doubtful_margin")
    judges = (FACE,)
    order = 10

    def score(self, subject: Subject) -> Score:
        return Score(min(subject.face_w, subject.face_h), {"w": subject.face_w, "h": subject.face_h})

    def reason(self, score: Score, threshold: float, passed: bool, cfg: FilterConfig) -> str:
        return (f"face box {score.facts['w']} x {score.facts['h']} px in the source: shorter side {score.value} px "
                f"{'>=' if passed else '<'} the {cfg.min_face_side} px minimum")


def face_size(face_w: int, face_h: int, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return FaceSize()(Subject.of_face(face_w, face_h), cfg)
