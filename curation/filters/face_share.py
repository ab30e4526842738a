"""face_share: how much of its part of the picture the face box covers (a headshot, not a full-body scene)."""

from __future__ import annotations

from .base import FACE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig


@register
class FaceShare(Filter):
    """Face box area over the part of the picture that is the face's: the whole picture for a
    single face, 1/n of it when n faces were found (`Subject.faces`; 0 = not known, taken as
    one). A sheet of 17 busts measures about 0.9% per face of the whole picture, like a single
    full-body figure, but 15% of its seventeenth; a small face beside a big one still fails
    (measured: a background face 0.3-0.7% of the picture next to one of 6-8% gives 0.5-1.3%).
    Two full-body figures side by side with faces over 1.5% of the picture each pass too: the
    count cannot tell them from a sheet of two busts (face_size still holds them to 64 px).
    """

    name = "face_share"
    version = "2"
    reads = ("min_face_share", "doubtful_margin")
    judges = (FACE,)
    order = 20

    def score(self, subject: Subject) -> Score:
        area = subject.image_w * subject.image_h
        n = max(1, subject.faces)
        share = (subject.face_w * subject.face_h) * n / area if area > 0 else 0.0
        return Score(share, {"w": subject.face_w, "h": subject.face_h, "image_w": subject.image_w,
                             "image_h": subject.image_h, "faces": n})

    def reason(self, score: Score, threshold: float, passed: bool, cfg: FilterConfig) -> str:
        f = score.facts
        part = "" if f["faces"] == 1 else f" (1/{f['faces']} of it: {f['faces']} faces found)"
        return (f"face box {f['w']} x {f['h']} covers {score.value:.2%} of its part of the {f['image_w']} x "
                f"{f['image_h']} picture{part} ({'>=' if passed else '<'} {cfg.min_face_share:.2%})"
                + ("" if passed else ": a small face in a full-body picture or a scene, not a headshot"))


def face_share(face_w: int, face_h: int, image_w: int, image_h: int, cfg: FilterConfig = FilterConfig(),
               faces: int = 0) -> Verdict:
    return FaceShare()(Subject.of_face(face_w, face_h, image_w, image_h, faces=faces), cfg)
