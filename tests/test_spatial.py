"""Spatial explanations: Grad-CAM on ViT token grids and CNN maps, crop geometry, sanity check."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from torch import nn

from explain.explainers import get_explainer, list_explainers
from explain.explainers.gradcam import GradCamTarget, _attribution_layer, grad_cam, gradcam_target
from explain.spatial import (
    average_ranks,
    cascade_depths,
    explain_spatial,
    hotspot,
    map_to_frame,
    overlay,
    pointing_game,
    randomised_network,
)
from models.analysis import AnalysisOptions, analyze
from models.encoders import EncoderSpec, get_encoder
from models.encoders.vision import FrameEncoder
from models.errors import AnalysisError
from models.faces import CropGeometry
from models.probes import LinearProbe, random_probe
from models.settings import Settings
from tests.builders import TINY_VIT, register_tiny_face_encoders


@pytest.fixture()
def tiny_encoders(register, tmp_path):
    """Tiny random-init ViTs of both families Grad-CAM supports, registered for one test."""
    return register_tiny_face_encoders(register, tmp_path)


@pytest.mark.parametrize("method", list_explainers())
@pytest.mark.parametrize("index", [0, 1, 2])
def test_explainer_smoke_over_methods_and_encoder_families(tiny_encoders, face_clip, index, method):
    encoder_id = tiny_encoders[index]
    probe_id = f"random@{encoder_id}"
    result = analyze(face_clip, [probe_id], AnalysisOptions(cache=None, settings=Settings(precision="fp32")))
    explanation = explain_spatial(result, probe_id, k=3, method=method)
    assert len(explanation.heatmaps) == 3 and explanation.method == method
    assert all(h.probe_id == probe_id for h in explanation.heatmaps)
    height, width = result.clip.frames.shape[1:3]
    for heatmap in explanation.heatmaps:
        assert heatmap.crop_map.shape == (224, 224) and heatmap.frame_map.shape == (height, width)
        assert 0.0 <= heatmap.crop_map.min() and heatmap.crop_map.max() == pytest.approx(1.0)
        assert 0 <= heatmap.peak[0] <= 1 and 0 <= heatmap.peak[1] <= 1
        # Grad-CAM's forward is the analysis' forward: the same step logit
        assert heatmap.logit == pytest.approx(result.probes[probe_id].scores.logits[heatmap.step], abs=1e-4)
    assert set(explanation.sanity) >= {"median_rank_correlation", "explains_model"}
    assert overlay(result.clip.frames[0], explanation.heatmaps[0].frame_map).shape == (height, width, 3)


def test_token_grid_tap_changes_nothing_and_matches_manual_grad_cam():
    from models.encoders.vision import build_vit

    torch.manual_seed(0)
    network = build_vit(EncoderSpec("v", "fsfm", "face", "random", 32, None, TINY_VIT)).eval()
    pixels = torch.randn(2, 3, 224, 224)
    target = gradcam_target(network)
    with torch.no_grad():
        plain = network(pixels)
        with _attribution_layer(network, target):
            tapped = network(pixels)
    assert torch.equal(plain, tapped)
    assert target.layer is network.blocks[-1].norm1  # restored afterwards
    # manual Grad-CAM: weights = token-mean gradient per channel; map = relu(Σ_c w_c A_c)
    weight = torch.randn(32)
    captured = {}
    handle = target.layer.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    activation_input = pixels.clone().requires_grad_(True)
    features = network(activation_input)
    logits = (features / features.norm(dim=1, keepdim=True)) @ weight
    handle.remove()
    grads = torch.autograd.grad(logits.sum(), captured["a"])[0][:, 1:]
    tokens = captured["a"][:, 1:]
    manual = torch.relu((grads.mean(1, keepdim=True) * tokens).sum(-1)).reshape(2, 7, 7).detach().numpy()

    class Fixed(FrameEncoder):
        def __init__(self):
            self.dtype, self.network = torch.float32, network

        def preprocess(self, images):
            return pixels

        def forward(self, x):
            return network(x)

    probe = LinearProbe(weight.numpy(), 0.0, {"id": "p", "encoder": "v"})
    maps, _ = grad_cam(Fixed(), probe, np.zeros((2, 7, 7, 3), np.uint8))  # crop size 7 = the grid
    for got, want in zip(maps, manual):
        assert np.allclose(got, want / want.max(), atol=1e-5)


def test_open_clip_attention_reads_its_grad_cam_tokens_without_a_copy(tiny_encoders):
    """torch's attention projects (L, N, D) tokens; handed a strided view that needs gradients,
    its projection copies the weight once per token (ViT-L/14, bf16: 5 s instead of 0.4 s)."""
    network = get_encoder("tiny-clip-spatial", precision="fp32").torch_module()
    attention = network.transformer.resblocks[-1].attn
    queries = []

    def keep_query(module, args, kwargs):
        queries.append(args[0] if args else kwargs["query"])

    handle = attention.register_forward_pre_hook(keep_query, with_kwargs=True)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        plain = network(pixels)
        with _attribution_layer(network, gradcam_target(network)):
            tapped = network(pixels)
    handle.remove()
    assert torch.equal(plain, tapped)
    as_read = queries[-1].transpose(0, 1) if attention.batch_first else queries[-1]
    assert as_read.is_contiguous()


class RedDetector(nn.Module):
    """A CNN whose feature is the mean 'redness' response: its Grad-CAM must find the red patch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0 / 64  # channel 0: red minus the mean of green and blue
            self.conv.weight[0, 1:] = -0.5 / 64
            self.conv.bias.fill_(0.01)  # channels 1-3: small constants, so the normalised feature still varies
            self.conv.bias[0] = 0.0
        self.gradcam_layer = self.conv
        self.gradcam_blocks = nn.ModuleList([self.conv])

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


class CnnEncoder(FrameEncoder):
    def __init__(self):
        self.dtype, self.network = torch.float32, RedDetector()

    def preprocess(self, images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255

    def forward(self, pixels):
        return self.network(pixels)


@pytest.mark.parametrize("corner", [(16, 16), (180, 40), (60, 190)])
def test_cnn_grad_cam_finds_the_evidence(corner):
    crops = np.full((1, 224, 224, 3), 90, np.uint8)
    x, y = corner
    crops[0, y:y + 24, x:x + 24] = (250, 20, 20)
    maps, logits = grad_cam(CnnEncoder(), LinearProbe(np.array([1.0, 0, 0, 0]), 0.0, {"id": "red", "encoder": "cnn"}), crops)
    row, col = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert x - 8 <= col <= x + 32 and y - 8 <= row <= y + 32
    assert logits[0] > 0


GEOMETRIES = {
    "off-centre": CropGeometry(500.0, 120.0, 160.0, 0.0, 640, 360, 224),
    "scaled-up": CropGeometry(320.0, 180.0, 448.0, 0.0, 640, 360, 224),
    "border-clipped": CropGeometry(600.0, 30.0, 200.0, 0.0, 640, 360, 224),
    "rotated": CropGeometry(300.0, 200.0, 224.0, 90.0, 640, 360, 224),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_crop_maximum_lands_at_the_right_frame_point(name):
    geometry = GEOMETRIES[name]
    col, row = 150, 60  # the maximum's crop pixel
    crop_map = np.zeros((224, 224), np.float32)
    crop_map[row, col] = 1.0
    frame_map, peak = map_to_frame(crop_map, geometry)
    scale = geometry.side / geometry.out_size
    u, v = (col + 0.5 - 112) * scale, (row + 0.5 - 112) * scale  # offset from the crop centre, frame pixels
    if geometry.angle == 90.0:  # crop x axis = frame −y, crop y axis = frame +x (counter-clockwise box)
        u, v = v, -u
    expected = ((geometry.centre_x + u) / 640, (geometry.centre_y + v) / 360)
    assert peak[0] == pytest.approx(min(max(expected[0], 0), 1), abs=1e-9)
    assert peak[1] == pytest.approx(min(max(expected[1], 0), 1), abs=1e-9)
    if 0 <= expected[0] <= 1 and 0 <= expected[1] <= 1 and frame_map.max() > 0:
        y, x = np.unravel_index(np.argmax(frame_map), frame_map.shape)
        assert abs((x + 0.5) / 640 - expected[0]) <= 2 * scale / 640 + 1 / 640
        assert abs((y + 0.5) / 360 - expected[1]) <= 2 * scale / 360 + 1 / 360


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_hotspot_centre_is_the_marked_area_not_its_brightest_edge(name):
    """A blob over crop pixels 100..140 × 40..80 that peaks on its left edge (as maps do on a
    blending seam), plus a weaker separate blob: the hot-spot centre is the main blob's
    centre carried through the geometry, the maximum stays on the edge (the seam's centre)."""
    geometry = GEOMETRIES[name]
    crop_map = np.zeros((224, 224), np.float32)
    crop_map[40:80, 100:140] = 0.8
    crop_map[40:80, 100:104] = 1.0  # the seam
    crop_map[180:200, 10:30] = 0.7  # a separate, weaker area: not part of the hot spot
    centre = float(hotspot(crop_map, geometry)[0]), float(hotspot(crop_map, geometry)[1])
    weights = crop_map[40:80, 100:140]
    cx = ((np.arange(100, 140) + 0.5) * weights.sum(0)).sum() / weights.sum()
    expected = geometry.crop_points_to_frame([[cx, 60.0]])[0]
    assert centre == pytest.approx((min(max(expected[0], 0), 1), min(max(expected[1], 0), 1)), abs=1e-6)
    edge = geometry.crop_points_to_frame([[102.0, 60.0]])[0]
    assert map_to_frame(crop_map, geometry)[1] == pytest.approx((min(max(edge[0], 0), 1), min(max(edge[1], 0), 1)))


def test_hotspot_of_an_empty_map_is_its_first_pixel():
    geometry = GEOMETRIES["off-centre"]
    assert hotspot(np.zeros((14, 14), np.float32), geometry) == map_to_frame(np.zeros((14, 14), np.float32),
                                                                             geometry)[1]


def test_cascade_randomises_one_two_half_and_all_blocks():
    assert cascade_depths(get_encoder("random-selfblend-cnn").torch_module()) == [1, 2, 4]


def test_border_clipped_box_keeps_peak_inside_frame():
    geometry = GEOMETRIES["border-clipped"]
    crop_map = np.zeros((224, 224), np.float32)
    crop_map[10, 10] = 1.0  # maps above the frame's top edge
    _, peak = map_to_frame(crop_map, geometry)
    assert peak[1] == 0.0


def test_randomisation_resets_only_the_top_blocks():
    network = get_encoder("random-selfblend-cnn").torch_module()
    clone = randomised_network(network, blocks=2)
    for name, value in network.state_dict().items():
        changed = not torch.equal(value, clone.state_dict()[name])
        if not name.startswith(("stages.2.", "stages.3.")):
            assert not changed, name  # lower blocks keep their weights
        elif value.dim() == 4:
            assert changed, name  # every convolution of the top blocks is re-drawn


def test_pointing_game():
    assert pointing_game((0.5, 0.5), [0.4, 0.4, 0.6, 0.6])
    assert not pointing_game((0.7, 0.5), [0.4, 0.4, 0.6, 0.6])


def test_gradcam_target_refuses_unknown_networks():
    with pytest.raises(AnalysisError, match="does not know where to look"):
        gradcam_target(nn.Linear(2, 2))
    assert isinstance(gradcam_target(RedDetector()), GradCamTarget)


def test_audio_probe_has_no_spatial_explanation(face_clip):
    probe = "random@random-selfsplice-gru"
    result = analyze(face_clip, [probe], AnalysisOptions(cache=None))
    with pytest.raises(AnalysisError, match="no image input"):
        explain_spatial(result, probe)
    assert random_probe("random-selfsplice-gru").dim == 128


def test_explainer_interface_ties_maps_to_steps_time_and_probe():
    crops = np.zeros((2, 32, 32, 3), np.uint8)
    crops[1, :8, :8, 0] = 255  # red evidence in the top-left corner of the second crop
    probe = LinearProbe(np.array([1.0, 0, 0, 0]), 0.0, {"id": "red", "encoder": "cnn"})
    maps = get_explainer("gradcam")(CnnEncoder(), probe, crops, [10, 50])
    assert [(m.probe_id, m.step, m.time_s) for m in maps] == [("red", 10, 0.4), ("red", 50, 2.0)]
    assert maps[1].crop_map.shape == (32, 32) and np.unravel_index(maps[1].crop_map.argmax(), (32, 32))[0] < 16
    with pytest.raises(AnalysisError, match="2 crops were given for 1 steps"):
        get_explainer("gradcam")(CnnEncoder(), probe, crops, [10])
    with pytest.raises(AnalysisError, match="unknown explanation method"):
        get_explainer("no-such-method")


@pytest.mark.parametrize("levels", [None, 3, 1])
def test_average_ranks_match_scipy_with_ties(levels):
    values = np.random.default_rng(5).random(400)
    if levels is not None:  # coarse values: many ties (one level: all tied)
        values = np.round(values * levels) / max(levels, 1) if levels > 1 else np.zeros(400)
    np.testing.assert_allclose(average_ranks(values), rankdata(values) - 1)
    other = np.random.default_rng(6).random(400) + values
    if levels != 1:
        assert np.corrcoef(average_ranks(values), average_ranks(other))[0, 1] == pytest.approx(
            spearmanr(values, other)[0])
