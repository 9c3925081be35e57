"""Compare the native BRAVEn encoder (models/encoders/braven.py) with the authors' own
ESPnet-style encoder, run from a checkout of their repository (github.com/ahaliassos/raven,
MIT): the same randomly initialised weights, saved in the authors' key layout, read by
this app's loader; prints the largest difference of the outputs.

    PYTHONPATH=/path/to/raven python -m research.reference.braven_compare [--steps 50]

Nothing of the authors' code is copied here: their checkout is on the import path
(PYTHONPATH) of this one process. Needs only torch (their encoder imports no other package).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from models.encoders.braven import build_model
from models.encoders.checkpoints import read_checkpoint

SIZES = {"tiny": (2, 64, 128, 4), "base": (12, 512, 2048, 8), "large": (24, 1024, 4096, 16)}  # layers, dim, ffn, heads


def reference_encoder(layers: int, dim: int, ffn_dim: int, heads: int) -> torch.nn.Module:
    """The authors' visual encoder with their published config's switches (swish front end,
    rel_mha, layer scale 0.1, batch norm before the feed-forward block, pre-norm)."""
    try:  # lazy: the authors' checkout, on PYTHONPATH only for this comparison
        from espnet.nets.pytorch_backend.transformer.encoder import Encoder
    except ImportError:
        raise SystemExit("the authors' code is not importable: run with PYTHONPATH=/path/to/raven "
                         "(a checkout of github.com/ahaliassos/raven)") from None

    return Encoder(idim=512, attention_dim=dim, attention_heads=heads, linear_units=ffn_dim, num_blocks=layers,
                   frontend="conv3d", input_layer="vanilla_linear", encoder_attn_layer_type="rel_mha",
                   relu_type="swish", layerscale=True, init_values=0.1, ff_bn_pre=True, post_norm=False)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial values where initialisation leaves constants (biases of position, layer
    scales, batch-norm statistics), so a mix-up of any of them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "pos_bias" in name or "gamma" in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))


def compare(size: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """Largest |difference| between the two encoders' outputs on one random clip of mouth
    regions, and the largest |output|."""
    torch.manual_seed(seed)
    theirs = reference_encoder(*SIZES[size]).eval()
    randomise(theirs, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{size}.pth"
        torch.save(theirs.state_dict(), path)
        ours = build_model(read_checkpoint(path, "BRAVEn", "BRAVEn checkpoints"), str(path))
    video = torch.randn(1, steps, 88, 88, generator=torch.Generator().manual_seed(seed + 1))
    with torch.inference_mode():
        expected, _ = theirs(video, None)
        got = ours(video[:, None])
    return float((expected - got).abs().max()), float(expected.abs().max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)
    for size in args.sizes:
        difference, scale = compare(size, args.steps)
        print(f"{size:5s} ({SIZES[size][0]} layers × {SIZES[size][1]}), {args.steps} steps, fp32: "
              f"max |native − reference| = {difference:.2e} (outputs up to {scale:.2f})")


if __name__ == "__main__":
    main()
