"""Reference side of the AV-HuBERT comparison (see README.md here): in the separate
reference env, build a small random AVHubertModel with the authors' code
(facebookresearch/av_hubert @ 258fb50 + fairseq @ afc77bdf, its submodule pin), save a
fairseq-style checkpoint, the inputs, the outputs of extract_finetune for audio+video,
audio only and video only, and every stage's intermediate output.

usage, in the reference environment's folder (stubs/ holds an empty cv2.py):
    PYTHONPATH=stubs:fairseq_src:av_hubert/avhubert venv310/bin/python avhubert_make_reference.py \
        OUTDIR LAYERS DIM FFN HEADS CONV_POS CONV_POS_GROUPS T [perturb]
(fairseq_0122_src instead of fairseq_src, with FAIRSEQ_0122=1, for fairseq 0.12.2.)
"""
import os
import sys

# hubert.py decides relative vs plain imports via len(sys.argv)==1 (DBG); make it take the plain path
_argv = sys.argv
sys.argv = [sys.argv[0]]
import fairseq
import torch
from fairseq.data.dictionary import Dictionary
from hubert import AVHubertConfig, AVHubertModel
from hubert_pretraining import AVHubertPretrainingConfig

sys.argv = _argv

out, L, D, FFN, H, CP, CPG, T = sys.argv[1], *map(int, sys.argv[2:9])
perturb = len(sys.argv) > 9 and sys.argv[9] == "perturb"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

model_cfg = dict(encoder_layers=L, encoder_embed_dim=D, encoder_ffn_embed_dim=FFN,
                 encoder_attention_heads=H, layer_norm_first=True, conv_pos=CP, conv_pos_groups=CPG,
                 audio_feat_dim=104, modality_fuse="concat")
cfg = AVHubertConfig(label_rate=25, input_modality="image", dropout=0.0, attention_dropout=0.0,
                     activation_dropout=0.0, encoder_layerdrop=0.0, dropout_input=0.0,
                     dropout_features=0.0, feature_grad_mult=0.1, resnet_relu_type="prelu",
                     **model_cfg)
if os.environ.get("FAIRSEQ_0122"):
    # newer fairseq's TransformerEncoder reads config fields AVHubertConfig lacks: take their
    # Wav2Vec2Config defaults (non-math: pos_conv_depth=1, layer_type=transformer, ...)
    import dataclasses

    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
    for f in dataclasses.fields(Wav2Vec2Config):
        if not hasattr(cfg, f.name):
            v = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            print("  filled missing cfg field", f.name, "=", v)
            setattr(cfg, f.name, v)
task_cfg = AVHubertPretrainingConfig(data="/nonexistent", labels=["km"], label_rate=25,
                                     sample_rate=25)
d = Dictionary()
for i in range(20):
    d.add_symbol(str(i))
model = AVHubertModel(cfg, task_cfg, [d])

g = torch.Generator().manual_seed(1)
def U(shape, lo, hi):
    return torch.empty(shape).uniform_(lo, hi, generator=g)

with torch.no_grad():
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(U(m.running_mean.shape, -0.1, 0.1))
            m.running_var.copy_(U(m.running_var.shape, 0.5, 1.5))
    if perturb:  # also move parameters that init to constants (LN/BN affine, PReLU, biases)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(U(p.shape, -0.1, 0.1))
            elif p.dim() == 1:  # LN / BN weights, PReLU slopes
                p.mul_(U(p.shape, 0.7, 1.3))
model.eval()

sd = model.state_dict()
ckpt_path = os.path.join(out, "checkpoint.pt")
torch.save({"model": sd, "cfg": {"model": dict(model_cfg)}}, ckpt_path)

audio_btf = torch.randn(1, T, 104, generator=g)   # layout the project uses: (B, T, F)
video = torch.randn(1, 1, T, 88, 88, generator=g)  # (B, C=1, T, H, W)
audio_bft = audio_btf.transpose(1, 2).contiguous()  # reference layout: (B, F, T)

results = {"audio": audio_btf, "video": video}
inter = {}
hooks = []
def keep(name):
    def f(mod, inp, outp):
        inter.setdefault(name, []).append((outp[0] if isinstance(outp, tuple) else outp).detach().clone())
    return f
for name in ["feature_extractor_audio", "feature_extractor_video", "layer_norm", "post_extract_proj",
             "encoder.pos_conv"] + [f"encoder.layers.{i}" for i in range(L)]:
    hooks.append(model.get_submodule(name).register_forward_hook(keep(name)))

with torch.no_grad():
    for case, src in {"av": {"audio": audio_bft, "video": video},
                      "audio": {"audio": audio_bft, "video": None},
                      "video": {"audio": None, "video": video}}.items():
        inter.clear()
        x, pm = model.extract_finetune(source=src, padding_mask=None, mask=False, output_layer=None)
        results[f"out_{case}"] = x.clone()
        # intermediates, all as (B, T, ...) ; encoder layers give (T, B, C)
        for k, v in inter.items():
            t = v[0]
            if k.startswith("feature_extractor"):
                t = t.transpose(1, 2)  # (B, D, T) -> (B, T, D)
            elif k.startswith("encoder.layers"):
                t = t.transpose(0, 1)
            elif k == "encoder.pos_conv":
                t = t.transpose(1, 2)
            results[f"inter_{case}/{k}"] = t.clone()
        # cross-check: extract_features (the pretraining forward, features_only) for av case
        if case == "av":
            x2, _ = model.extract_features(source=src, padding_mask=None, mask=False, output_layer=None)
            results["out_av_extract_features"] = x2.clone()
        print(case, tuple(x.shape), "max|out|=%.4f" % x.abs().max().item())
torch.save(results, os.path.join(out, "reference.pt"))
print("extract_features vs extract_finetune (av):",
      (results["out_av_extract_features"] - results["out_av"]).abs().max().item())
print("saved", ckpt_path, "keys:", len(sd))
print("torch", torch.__version__, "fairseq", fairseq.__version__, "python", sys.version.split()[0])
