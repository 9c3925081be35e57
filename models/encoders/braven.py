"""BRAVEn's visual encoder run natively from its published checkpoints (bare state dicts):
the 3-D convolution + ResNet-18 lip front end (swish), a linear projection, a transformer
with relative positional self-attention, and its output after the final layer norm, one
vector per 40 ms step (1024-d for large, 512-d for base).

Written from the BRAVEn / RAVEn papers (Haliassos et al., ICASSP 2024 / ICLR 2023) and the
authors' published configs and checkpoint layout (the ESPnet-style encoder):

- sizes come from the checkpoint's shapes: width from `embed.0.weight`, heads from
  `pos_bias_u`, feed-forward width from `w_1`, the number of layers from `encoders.N`; the
  front end is swish unless the file holds PReLU weights; the feed-forward norm is a batch
  norm (`ff_bn_pre`) when the file holds its running statistics, and layer scale is on
  when it holds `gamma_*`;
- a block is x + γ_mha·attention(LayerNorm(x)), then x + γ_ff·FFN(norm(x)), FFN = linear,
  ReLU, linear; the input is scaled by √width before the first block; LayerNorm ε = 1e-12;
- attention is Transformer-XL's: scores (q + u)·k + (q + v)·p(i − j), over √d_k, with
  p the sinusoidal embedding of the relative position i − j through `linear_pos`;
- fine-tuned (VSR) checkpoints keep the encoder under "encoder." beside the CTC head and
  the decoder, which are not used; any other key that does not map fails with its name.

Input: the 88 px grey mouth regions as the authors cut them (`ClipInputs.mouth_rois("braven")`:
eight points fitted to the mean face by least median of squares), scaled to 0..1 and
normalised with mean 0.421, std 0.165, as in the authors' grayscale config.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.encoders.base import ClipInputs
from models.encoders.checkpoints import CheckpointEncoder, load_exact, read_checkpoint
from models.encoders.lip_frontend import TRUNK_WIDTH, ResEncoder, swish, video_features
from models.errors import AnalysisError

FRONTEND_KEY = "frontend.frontend3D.0.weight"  # the key that finds the encoder inside any layout
UNUSED_PREFIXES = ("decoder.", "ctc.")  # a fine-tuned checkpoint's heads
LAYER_NORM_EPS = 1e-12  # ESPnet's LayerNorm
WHERE = "BRAVEn checkpoints"


@dataclass(frozen=True)
class BRAVEnConfig:
    """The encoder's sizes and switches (large: 24 layers × 1024, 16 heads, 4096 feed-forward)."""

    layers: int = 24
    dim: int = 1024
    ffn_dim: int = 4096
    heads: int = 16
    prelu: bool = False  # the front end's activation: swish (published configs) or PReLU
    batch_norm_ff: bool = True  # `ff_bn_pre`: a batch norm before the feed-forward block
    layerscale: bool = True

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "BRAVEnConfig":
        """Read from the shapes of an encoder state dict (keys without prefix)."""
        try:
            dim, input_dim = state["embed.0.weight"].shape
            heads = state["encoders.0.self_attn.pos_bias_u"].shape[0]
            ffn_dim = state["encoders.0.feed_forward.w_1.weight"].shape[0]
        except KeyError as missing:
            raise AnalysisError(f"the BRAVEn weights have no {missing.args[0]}: not a BRAVEn/RAVEn visual encoder.",
                                hint="Give a BRAVEn video checkpoint (see README: BRAVEn checkpoints).") from None
        if input_dim != TRUNK_WIDTH:
            raise AnalysisError(f"the BRAVEn weights project {input_dim} front-end values per step (embed.0.weight); "
                                f"the ResNet-18 lip front end gives {TRUNK_WIDTH}.",
                                hint="Give a BRAVEn base or large video checkpoint (see README: BRAVEn checkpoints).")
        layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"encoders\.(\d+)\.", key)))
        return cls(layers=layers, dim=dim, ffn_dim=ffn_dim, heads=heads,
                   prelu="frontend.frontend3D.2.weight" in state,
                   batch_norm_ff="encoders.0.norm_ff.running_mean" in state,
                   layerscale="encoders.0.gamma_ff" in state)


# -- network ---------------------------------------------------------------------------------------

def relative_positions(steps: int, dim: int) -> torch.Tensor:
    """(2·steps − 1, dim) sinusoidal embeddings of the relative positions steps − 1 … −(steps − 1)."""
    position = torch.arange(steps - 1, -steps, -1, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(2 * steps - 1, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def relative_shift(scores: torch.Tensor) -> torch.Tensor:
    """(…, T, 2T − 1) scores against every relative position → (…, T, T) with [i, j] the
    score for position i − j, i.e. column T − 1 − i + j of row i: a strided view (row
    stride 2T − 2, starting at column T − 1), no copy."""
    scores = scores.contiguous()
    steps, width = scores.shape[-2:]
    strides = scores.stride()
    return scores.as_strided((*scores.shape[:-1], steps), (*strides[:-2], width - 1, 1),
                             scores.storage_offset() + steps - 1)


class RelPositionAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.linear_q, self.linear_k, self.linear_v, self.linear_out = (nn.Linear(dim, dim) for _ in range(4))
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, dim // heads))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, dim // heads))

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        batch, steps, dim = x.shape
        head_dim = dim // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, T, D) → (B, heads, T, head_dim)
            return t.view(t.shape[0], -1, self.heads, head_dim).transpose(1, 2)

        query = self.linear_q(x).view(batch, steps, self.heads, head_dim)
        position = split(self.linear_pos(positions)[None])
        content_query = (query + self.pos_bias_u).transpose(1, 2)
        position_query = (query + self.pos_bias_v).transpose(1, 2)
        position_scores = relative_shift(position_query @ position.transpose(-2, -1)) / math.sqrt(head_dim)
        attended = F.scaled_dot_product_attention(content_query, split(self.linear_k(x)), split(self.linear_v(x)),
                                                  attn_mask=position_scores.to(content_query.dtype))
        return self.linear_out(attended.transpose(1, 2).reshape(batch, steps, dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.relu(self.w_1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: BRAVEnConfig):
        super().__init__()
        self.self_attn = RelPositionAttention(config.dim, config.heads)
        self.feed_forward = FeedForward(config.dim, config.ffn_dim)
        self.norm_mha = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.norm_ff = nn.BatchNorm1d(config.dim) if config.batch_norm_ff else nn.LayerNorm(config.dim,
                                                                                          eps=LAYER_NORM_EPS)
        if config.layerscale:
            self.gamma_mha = nn.Parameter(torch.ones(config.dim))
            self.gamma_ff = nn.Parameter(torch.ones(config.dim))
        self.layerscale = config.layerscale

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        attended = self.self_attn(self.norm_mha(x), positions)
        x = x + (self.gamma_mha * attended if self.layerscale else attended)
        normed = self.norm_ff(x.reshape(-1, x.shape[-1])).view_as(x)  # a batch norm sees (B·T, D)
        fed = self.feed_forward(normed)
        return x + (self.gamma_ff * fed if self.layerscale else fed)


class BRAVEn(nn.Module):
    """The visual encoder: lip front end, projection (scaled by √width), transformer, final norm."""

    def __init__(self, config: BRAVEnConfig):
        super().__init__()
        self.frontend = ResEncoder(nn.PReLU if config.prelu else swish)
        self.embed = nn.Sequential(nn.Linear(TRUNK_WIDTH, config.dim))
        self.encoders = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.after_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.scale = math.sqrt(config.dim)

    def for_inference(self) -> "BRAVEn":
        """Batch norms folded into the layer before them (the front end's convolutions) or
        after them (the feed-forward block's first linear layer): same outputs within float
        rounding, done once after loading."""
        self.frontend.fold_batch_norms()
        for layer in self.encoders:
            if isinstance(layer.norm_ff, nn.BatchNorm1d):
                layer.norm_ff = fold_batch_norm_forward(layer.norm_ff, layer.feed_forward.w_1)
        return self.eval()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, 88, 88) normalised mouth regions → (B, T, dim)."""
        x = self.embed(self.frontend(video)) * self.scale
        positions = relative_positions(x.shape[1], x.shape[2]).to(x.dtype)
        for layer in self.encoders:
            x = layer(x, positions)
        return self.after_norm(x)


@torch.no_grad()
def fold_batch_norm_forward(norm: nn.BatchNorm1d, layer: nn.Linear) -> nn.Identity:
    """Fold the inference batch norm `norm` that feeds `layer` into it: layer(norm(x)) =
    layer'(x). Returns the identity that takes the norm's place."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    layer.bias.add_(layer.weight @ shift)
    layer.weight.mul_(scale)
    return nn.Identity()


# -- checkpoints ---------------------------------------------------------------------------------------

def encoder_state(checkpoint: object, source: str) -> dict[str, torch.Tensor]:
    """The encoder's weights out of a bare state dict (pretrained), a fine-tuned model's
    (encoder under "encoder." beside "ctc." and "decoder."), or either inside a
    {"state_dict": …} wrapper; prefixes stripped. Keys outside the encoder that are not a
    known head stay as they are, so loading names them."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise AnalysisError(f"{source}: is not a BRAVEn checkpoint (a state dict of tensors).",
                            hint="Give a BRAVEn video checkpoint as downloaded (see README: BRAVEn checkpoints).")
    anchor = next((key for key in checkpoint if key.endswith(FRONTEND_KEY)), None)
    if anchor is None:
        raise AnalysisError(f"{source}: has no {FRONTEND_KEY}: not a BRAVEn/RAVEn visual encoder (audio "
                            "checkpoints have a 1-D front end and are not read here).",
                            hint="Give a BRAVEn video checkpoint (see README: BRAVEn checkpoints).")
    prefix = anchor[:-len(FRONTEND_KEY)]
    return {key.removeprefix(prefix): value for key, value in checkpoint.items()
            if key.startswith(prefix) or not key.startswith(UNUSED_PREFIXES)}


def build_model(checkpoint: object, source: str = "checkpoint") -> BRAVEn:
    """The network a checkpoint describes with its weights, every key mapped."""
    state = encoder_state(checkpoint, source)
    return load_exact(BRAVEn(BRAVEnConfig.from_state(state)), state, source, "BRAVEn").for_inference()


# -- the encoder -------------------------------------------------------------------------------------

class BRAVEnEncoder(CheckpointEncoder):
    """BRAVEn from a checkpoint (`--weights ENCODER=PATH`), or from a feature file (`--features`)."""

    def load(self, weights: str) -> nn.Module:
        return build_model(read_checkpoint(weights, "BRAVEn", WHERE), str(weights))

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        video = torch.from_numpy(video_features(inputs.mouth_rois("braven")))
        with self.inference():
            return self.model(video)[0].float().numpy()
