"""Project side of the AV-HuBERT comparison (see README.md here): load the reference's
checkpoint through this app's loader, run the same inputs, print the largest difference per
case and per stage.

    python -m research.reference.avhubert_compare OUTDIR   # OUTDIR written by avhubert_make_reference.py
"""
import sys
from pathlib import Path

import torch

from models.encoders.avhubert import build_model, load_checkpoint

out = Path(sys.argv[1])
path = out / "checkpoint.pt"
model = build_model(load_checkpoint(path), str(path))
model.eval()
ref = torch.load(out / "reference.pt")
audio, video = ref["audio"], ref["video"]

inter = {}
def keep(name):
    def f(mod, inp, outp):
        inter[name] = outp.detach().clone()
    return f
names = ["feature_extractor_audio", "feature_extractor_video", "layer_norm", "post_extract_proj",
         "encoder.pos_conv"] + [f"encoder.layers.{i}" for i in range(len(model.encoder.layers))]
for n in names:
    model.get_submodule(n).register_forward_hook(keep(n))

torch.set_printoptions(precision=3)
worst = 0.0
for case, (a, v) in {"av": (audio, video), "audio": (audio, None), "video": (None, video)}.items():
    inter.clear()
    with torch.no_grad():
        y = model(a, v)
    r = ref[f"out_{case}"]
    diff = (y - r).abs().max().item()
    worst = max(worst, diff)
    print(f"[{case:5s}] shape {tuple(y.shape)} vs ref {tuple(r.shape)}  max|diff|={diff:.3e}  "
          f"max|ref|={r.abs().max().item():.4f}  max|out|={y.abs().max().item():.4f}")
    for n in names:
        k = f"inter_{case}/{n}"
        if k in ref and n in inter:
            # main's pos_conv hook output is the GELU'd conv (B,T,D); ref's is the same (B,T,D)
            print(f"      {n:28s} max|diff|={(inter[n] - ref[k]).abs().max().item():.3e}")
print(f"WORST max|diff| over cases = {worst:.3e}")
print("torch", torch.__version__)
