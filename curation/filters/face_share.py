"""face_share: how much of the picture the face box covers (a headshot, not a full-body scene)."""

from __future__ import annotations

from .base import FACE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig


@register
class FaceShare(Filter):
    name = "face_share"
    version = "1"
    reads = ("min_face_share", "doubtful_margin")
    judges = (FACE,)
    order = 20

    def score(self, subject: Subject) -> Score:
        area = subject.image_w * subject.image_h
        share = (subject.face_w * subject.face_h) / area if area > 0 else 0.0
        return Score(share, {"w": subject.face_w, "h": subject.face_h, "image_w": subject.image_w,
                             "image_h": subject.image_h})

    def reason(self, score: Score, threshold: float, passed: bool, cfg: FilterConfig) -> str:
        f = score.facts
        return (f"face box {f['w']} x {f['h']} covers {score.value:.2%} of the {f['image_w']} x {f['image_h']} picture "
                f"({'>=' if passed else '<'} {cfg.min_face_share:.2%})"
                + ("" if passed else ": a small face in a full-body picture or a scene, not a headshot"))


def face_share(face_w: int, face_h: int, image_w: int, image_h: int, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return FaceShare()(Subject.of_face(face_w, face_h, image_w, image_h), cfg)
