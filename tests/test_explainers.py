"""Explanations measured against baselines: every registered spatial method on every face-crop
family and on a planted artefact, deletion/insertion faithfulness against a random order,
the audio time-frequency attribution, and the cross-modal ablation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from explain.audio_attribution import AudioAttribution, audio_attribution, explain_audio
from explain.explainers import get_explainer, list_explainers
from explain.explainers.base import blurred_crops, crop_logits
from explain.explainers.gradcam import gradcam_target
from explain.explainers.occlusion import occlusion_windows, tiling_windows
from explain.faithfulness import explanation_faithfulness, spatial_faithfulness, temporal_faithfulness
from explain.figures import audio_attribution_figure
from explain.modality import modality_contributions
from explain.spatial import (
    MAXIMUM_LEVEL,
    explain_spatial,
    randomisation_check,
    randomised_network,
    shuffled_probe,
)
from explain.verdict import log_odds
from models.analysis import AnalysisOptions, AnalysisResult, ProbeResult, analyze
from models.calibration import clip_score
from models.encoders import EncoderSpec, get_encoder
from models.encoders.project import EDGE_STEPS
from models.encoders.vision import FrameEncoder, build_vit
from models.errors import AnalysisError
from models.media import MediaInfo
from models.probes import LinearProbe, ProbeScores, random_probe, sigmoid
from models.spectrogram import log_mel
from models.timing import SAMPLE_RATE, STEP_RATE
from tests.builders import TINY_VIT, register_tiny_face_encoders

SIDE = 224
BOX = (136, 40, 184, 88)  # x0, y0, x1, y1 of the planted artefact in the crop
OTHER_BOX = (24, 152, 72, 200)


@pytest.fixture()
def tiny_encoders(register, tmp_path):
    return register_tiny_face_encoders(register, tmp_path)


def textured_crops(n: int = 2, seed: int = 0) -> np.ndarray:
    """Face-crop-sized images of random texture (every window differs from its blurred copy)."""
    return np.random.default_rng(seed).integers(60, 200, (n, SIDE, SIDE, 3)).astype(np.uint8)


def planted_crops(box: tuple[int, int, int, int] = BOX, n: int = 2) -> np.ndarray:
    crops = textured_crops(n)
    x0, y0, x1, y1 = box
    crops[:, y0:y1, x0:x1] = (250, 20, 20)
    return crops


# -- every method on every encoder family ---------------------------------------------------

@pytest.mark.parametrize("method", list_explainers())
def test_every_method_gives_crop_maps_in_0_1_and_the_step_logits_on_every_family(tiny_encoders, method):
    crops = textured_crops()
    for encoder_id in tiny_encoders:
        encoder = get_encoder(encoder_id, precision="fp32")
        probe = random_probe(encoder_id)
        maps, logits = get_explainer(method).attribute(encoder, probe, crops)
        assert maps.shape == (2, SIDE, SIDE) and maps.dtype.kind == "f", encoder_id
        assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() == pytest.approx(1.0), encoder_id
        assert np.allclose(logits, crop_logits(encoder, probe, crops), atol=1e-4), encoder_id
        # the sanity check's override: another network gives other logits and another map
        twin = randomised_network(encoder.torch_module(), blocks=1, seed=5)
        twin_maps, twin_logits = get_explainer(method).attribute(encoder, probe, crops, twin)
        assert twin_maps.shape == maps.shape and np.isfinite(twin_maps).all(), encoder_id
        assert not np.allclose(twin_logits, logits, atol=1e-4) and not np.allclose(twin_maps, maps), encoder_id


@pytest.mark.parametrize("method", list_explainers())
def test_several_heads_at_once_equal_one_head_at_a_time(tiny_encoders, method):
    """The sanity check asks for the probe and its shuffled twin together (occlusion shares the
    encoder's passes between them): the maps must be the ones each head gets alone."""
    crops = textured_crops()
    encoder = get_encoder("random-selfblend-cnn", precision="fp32")
    probes = [random_probe("random-selfblend-cnn", seed) for seed in (1, 2)]
    together = get_explainer(method).attribute_heads(encoder, probes, crops)
    for probe, (maps, logits) in zip(probes, together):
        alone_maps, alone_logits = get_explainer(method).attribute(encoder, probe, crops)
        np.testing.assert_allclose(maps, alone_maps, atol=1e-5)
        np.testing.assert_allclose(logits, alone_logits, atol=1e-5)
    assert not np.allclose(together[0][0], together[1][0])  # two heads, two maps


def test_registry_names_the_five_methods():
    assert list_explainers() == ["gradcam", "gradcam-mid", "integrated-gradients", "occlusion", "occlusion-fine"]


def test_gradcam_mid_looks_at_the_middle_block_of_every_family(tiny_encoders):
    vit = build_vit(EncoderSpec("v4", "fsfm", "face", "random", 32, None, {**TINY_VIT, "depth": 4}))
    assert gradcam_target(vit, middle=True).layer is vit.blocks[1].norm1
    assert gradcam_target(vit).layer is vit.blocks[3].norm1
    clip = get_encoder("tiny-clip-spatial", precision="fp32").torch_module()
    assert gradcam_target(clip, middle=True).layer is clip.transformer.resblocks[0].ln_1
    cnn = get_encoder("random-selfblend-cnn").torch_module()
    assert gradcam_target(cnn, middle=True).layer is cnn.stages[1]  # 28 × 28, the last stage is 14 × 14
    crops = textured_crops(1)
    probe = random_probe("random-selfblend-cnn")
    last, mid = (get_explainer(name).attribute(get_encoder("random-selfblend-cnn"), probe, crops)[0]
                 for name in ("gradcam", "gradcam-mid"))
    assert not np.allclose(last, mid)


@pytest.mark.parametrize("stride_fraction", [1.0, 0.5])
@pytest.mark.parametrize("side", [224, 112, 100, 105, 7])
def test_occlusion_windows_and_their_tiling_cover_every_pixel_and_scale_with_the_crop(side, stride_fraction):
    corners, window = occlusion_windows(side, stride_fraction)
    assert window == max(1, round(side / 7))
    tiling = tiling_windows(corners, window)
    for chosen in (corners, [corners[index] for index in tiling]):
        covered = np.zeros((side, side), int)
        for row, col in chosen:
            assert 0 <= row and row + window <= side and 0 <= col and col + window <= side
            covered[row:row + window, col:col + window] += 1
        assert covered.min() >= 1
    if side == 224:  # 7 × 7 windows of 32 px tile the crop exactly; the fine grid has 13 × 13
        assert len(tiling) == 49 and covered.max() == 1
        assert len(corners) == (49 if stride_fraction == 1.0 else 169)


# -- a planted artefact: the logit reads one square of the crop only ------------------------

class Masked(nn.Module):
    """Zero everywhere outside a fixed mask: the network sees nothing there."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class PlantedNetwork(nn.Module):
    """Redness of 8 × 8 cells, masked to one square, averaged; a constant second feature keeps
    the L2-normalised feature moving with it. Its logit depends on that square alone."""

    def __init__(self, box: tuple[int, int, int, int], cell: int = 8):
        super().__init__()
        x0, y0, x1, y1 = box
        mask = torch.zeros(SIDE // cell, SIDE // cell)
        mask[y0 // cell:y1 // cell, x0 // cell:x1 // cell] = 1
        conv = nn.Conv2d(3, 1, cell, stride=cell)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0] = 1 / cell ** 2  # red minus the mean of green and blue
            conv.weight[0, 1:] = -0.5 / cell ** 2
            conv.bias.zero_()
        self.gradcam_blocks = nn.Sequential(nn.Sequential(conv, Masked(mask)), nn.ReLU())
        self.gradcam_layer = self.gradcam_blocks[-1]
        self.area = float(mask.sum())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        redness = self.gradcam_blocks(pixels).sum((2, 3)) / self.area
        return torch.cat([redness, torch.ones_like(redness)], 1)


class PlantedEncoder(FrameEncoder):
    def __init__(self, box: tuple[int, int, int, int] = BOX):
        self.dtype, self.network = torch.float32, PlantedNetwork(box)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(pixels)


PLANTED_PROBE = LinearProbe(np.array([4.0, 0.0]), -2.0, {"id": "planted", "encoder": "planted"})


def box_mass(crop_map: np.ndarray, box: tuple[int, int, int, int], margin: int = 0) -> float:
    x0, y0, x1, y1 = box
    return float(crop_map[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin].sum() / crop_map.sum())


def in_box(crop_map: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """The centre of the map's maximum (window-based maps are flat over a window) lies in the box."""
    rows, cols = np.nonzero(crop_map >= crop_map.max() * MAXIMUM_LEVEL)
    return box[0] <= cols.mean() < box[2] and box[1] <= rows.mean() < box[3]


@pytest.mark.parametrize("method", list_explainers())
def test_every_method_finds_the_planted_artefact(method):
    crops = planted_crops()
    maps, logits = get_explainer(method).attribute(PlantedEncoder(), PLANTED_PROBE, crops)
    assert logits == pytest.approx(crop_logits(PlantedEncoder(), PLANTED_PROBE, crops)) and (logits > 0).all()
    window = SIDE // 7  # occlusion spreads a drop over the windows that overlap the square
    for crop_map in maps:
        assert in_box(crop_map, BOX)
        assert box_mass(crop_map, BOX, margin=window) > 0.95
        assert box_mass(crop_map, OTHER_BOX) < 0.01


@pytest.mark.parametrize("method", list_explainers())
def test_every_method_explains_the_network_it_is_given(method):
    """The `network=` override (the sanity check's twin) is the network explained: one that
    reads another square moves every map there."""
    crops = planted_crops()
    x0, y0, x1, y1 = OTHER_BOX
    crops[:, y0:y1, x0:x1] = (240, 30, 30)
    maps, logits = get_explainer(method).attribute(PlantedEncoder(BOX), PLANTED_PROBE, crops,
                                                   PlantedNetwork(OTHER_BOX))
    assert all(in_box(m, OTHER_BOX) for m in maps)
    assert logits == pytest.approx(crop_logits(PlantedEncoder(OTHER_BOX), PLANTED_PROBE, crops))


@pytest.mark.parametrize("method", list_explainers())
def test_every_methods_sanity_maps_compare_the_model_with_its_twin_and_shuffled_head(method):
    """The maps shown are `attribute`'s; the sanity maps of an encoder that is its own twin are
    the model's maps (the check fails), and a twin that reads another square moves its maps there."""
    explainer, crops = get_explainer(method), planted_crops()
    x0, y0, x1, y1 = OTHER_BOX
    crops[:, y0:y1, x0:x1] = (240, 30, 30)
    encoder, shuffled = PlantedEncoder(BOX), shuffled_probe(PLANTED_PROBE)
    shown, logits = explainer.attribute(encoder, PLANTED_PROBE, crops)
    (maps, sanity_logits), own = explainer.attribute_with_sanity(encoder, PLANTED_PROBE, shuffled, crops,
                                                                 encoder.network)
    assert np.allclose(maps, shown) and np.allclose(sanity_logits, logits)
    assert np.allclose(own.twin_maps, own.maps) and not randomisation_check(*own)["explains_model"]
    _, other = explainer.attribute_with_sanity(encoder, PLANTED_PROBE, shuffled, crops, PlantedNetwork(OTHER_BOX))
    window = SIDE // 7  # the sanity grid's windows tile the crop: a map is constant over each
    assert all(box_mass(m, OTHER_BOX, margin=window) > 0.95 for m in other.twin_maps)
    assert all(box_mass(m, BOX, margin=window) > 0.95 for m in other.maps)


# -- faithfulness -----------------------------------------------------------------------------

def box_map(box: tuple[int, int, int, int], n: int = 2) -> np.ndarray:
    x0, y0, x1, y1 = box
    maps = np.zeros((n, SIDE, SIDE))
    maps[:, y0:y1, x0:x1] = 1.0
    return maps


def test_a_map_of_the_planted_region_beats_a_random_order_and_a_wrong_map_does_not():
    encoder, crops = PlantedEncoder(), planted_crops()
    right = spatial_faithfulness(encoder, PLANTED_PROBE, crops, box_map(BOX))
    areas = right.areas()
    assert (areas["deletion_auc"] < areas["random_deletion_auc"] - 0.2).all()
    assert (areas["insertion_auc"] > areas["random_insertion_auc"] + 0.2).all()
    assert right.summary()["faithfulness"] > 0.4
    wrong = spatial_faithfulness(encoder, PLANTED_PROBE, crops, box_map(OTHER_BOX)).summary()
    assert abs(wrong["faithfulness"]) < 0.1 and wrong["deletion_auc"] > right.summary()["deletion_auc"] + 0.2


def test_deletion_and_insertion_curves_run_between_the_crop_and_its_blurred_copy():
    encoder, crops = PlantedEncoder(), planted_crops()
    curves = spatial_faithfulness(encoder, PLANTED_PROBE, crops, box_map(BOX), steps=10)
    assert curves.fractions == pytest.approx(np.linspace(0, 1, 11)) and curves.deletion.shape == (2, 11)
    full = sigmoid(2 * crop_logits(encoder, PLANTED_PROBE, crops))
    empty = sigmoid(2 * crop_logits(encoder, PLANTED_PROBE, blurred_crops(crops)))
    assert full[0] > 0.7 and empty[0] < 0.3  # blurring removes the evidence
    for deletion in (curves.deletion, curves.random_deletion):
        assert deletion[:, 0] == pytest.approx(full, abs=1e-6) and deletion[:, -1] == pytest.approx(empty, abs=1e-6)
    for insertion in (curves.insertion, curves.random_insertion):
        assert insertion[:, 0] == pytest.approx(empty, abs=1e-6) and insertion[:, -1] == pytest.approx(full, abs=1e-6)
    with pytest.raises(AnalysisError, match="do not fit"):
        spatial_faithfulness(encoder, PLANTED_PROBE, crops, box_map(BOX)[:, :100])


@pytest.mark.parametrize("method", list_explainers())
def test_every_method_is_more_faithful_than_random_on_the_planted_artefact(method):
    crops = planted_crops()
    maps, _ = get_explainer(method).attribute(PlantedEncoder(), PLANTED_PROBE, crops)
    assert spatial_faithfulness(PlantedEncoder(), PLANTED_PROBE, crops, maps).summary()["faithfulness"] > 0.3


def test_faithfulness_of_an_analysed_videos_explanation(face_clip):
    probe_id = "random@random-selfblend-cnn"
    result = analyze(face_clip, [probe_id], AnalysisOptions(cache=None))
    explanation = explain_spatial(result, probe_id, k=2, sanity=False, method="integrated-gradients")
    faithfulness = explanation_faithfulness(result, explanation, steps=8)
    assert faithfulness.deletion.shape == (2, 9)
    summary = faithfulness.summary()
    assert set(summary) == {"deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                            "faithfulness"}
    assert all(np.isfinite(v) for v in summary.values())
    step_probabilities = sigmoid(2 * result.probes[probe_id].scores.logits[[h.step for h in explanation.heatmaps]])
    assert faithfulness.deletion[:, 0] == pytest.approx(step_probabilities, abs=1e-4)


def test_temporal_deletion_by_the_step_logits_beats_random_steps():
    logits = np.full(100, -2.0)
    logits[40:45] = 3.0  # five steps carry the clip's evidence
    curves = temporal_faithfulness(logits)
    areas = {k: float(v[0]) for k, v in curves.areas().items()}
    assert areas["deletion_auc"] < areas["random_deletion_auc"] - 0.2
    assert areas["insertion_auc"] > areas["random_insertion_auc"] + 0.2
    assert curves.deletion[0, 0] == pytest.approx(sigmoid(2 * clip_score(logits)))
    assert curves.deletion[0, -1] == pytest.approx(sigmoid(2 * -2.0))  # every step at the clip's floor
    assert (np.diff(curves.deletion[0]) <= 1e-12).all() and (np.diff(curves.insertion[0]) >= -1e-12).all()
    assert temporal_faithfulness(logits, importance=-logits).summary()["faithfulness"] < 0 < curves.summary()[
        "faithfulness"]


def test_temporal_faithfulness_of_evenly_spread_evidence_is_zero_and_lengths_must_match():
    assert temporal_faithfulness(np.full(60, 1.5)).summary()["faithfulness"] == 0.0
    with pytest.raises(AnalysisError, match="does not fit"):
        temporal_faithfulness(np.zeros(10), importance=np.zeros(9))


# -- audio: time-frequency attribution -------------------------------------------------------

def tone_burst(audio: np.ndarray, start_s: float, end_s: float, frequency: float) -> None:
    """Add a Hann-windowed tone (no onset click) between two times."""
    count = int((end_s - start_s) * SAMPLE_RATE)
    first = int(start_s * SAMPLE_RATE)
    audio[first:first + count] += 0.5 * np.hanning(count) * np.sin(2 * np.pi * frequency * np.arange(count)
                                                                   / SAMPLE_RATE)


class BandNetwork(nn.Module):
    """Reads one band of mel bins: per step (4 mel frames), the band's mean level above −20 dB
    (in the encoder's normalised units) and a constant; like SpliceNet, (N, bins, frames) →
    (N, steps, features). With `delay`, step s reports what step s − delay read."""

    def __init__(self, low: int, high: int, delay: int = 0):
        super().__init__()
        self.low, self.high, self.delay = low, high, delay

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        level = torch.relu(mel[:, self.low:self.high].mean(1) + 0.5)
        batch, frames = level.shape
        steps = torch.roll(level[:, :frames // 4 * 4].reshape(batch, -1, 4).mean(2), self.delay, 1)
        return torch.stack([steps, torch.ones_like(steps)], -1)


@pytest.fixture(scope="module")
def tone_clip() -> tuple[np.ndarray, int]:
    """2 s at the floor with a 1 kHz tone from 0.8 to 1.2 s, and the tone's mel bin."""
    audio = (1e-4 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    tone_burst(audio, 0.8, 1.2, 1000.0)
    return audio, int(log_mel(audio)[:, 100].argmax())


AUDIO_PROBE = LinearProbe(np.array([3.0, 0.0]), -1.0, {"id": "planted-audio", "encoder": "random-selfsplice-gru"})


def test_audio_attribution_concentrates_on_the_planted_time_frequency_patch(tone_clip):
    audio, band = tone_clip
    encoder = get_encoder("random-selfsplice-gru")
    result = audio_attribution(encoder, AUDIO_PROBE, audio, 50, network=BandNetwork(band - 3, band + 4))
    attribution = result.attribution
    assert attribution.shape == log_mel(audio).shape and attribution.min() >= 0 and attribution.max() == 1.0
    row, col = np.unravel_index(int(np.argmax(attribution)), attribution.shape)
    assert band - 3 <= row < band + 4 and 80 <= col <= 120  # the tone: bins around 1 kHz, 0.8-1.2 s
    assert attribution[band - 5:band + 6, 76:126].sum() / attribution.sum() > 0.95
    assert result.logits[25] > 0 > result.logits[5] and result.step is None


def test_audio_attribution_of_one_step_lies_on_that_steps_frames(tone_clip):
    audio, band = tone_clip
    encoder = get_encoder("random-selfsplice-gru")
    result = audio_attribution(encoder, AUDIO_PROBE, audio, 50, step=24, network=BandNetwork(band - 3, band + 4))
    frames = np.flatnonzero(result.attribution.sum(0) > 1e-6)
    assert frames.tolist() == [96, 97, 98, 99]  # step 24 covers 0.96-1.00 s: mel frames 96-99 (10 ms hop)
    with pytest.raises(AnalysisError, match="outside"):
        audio_attribution(encoder, AUDIO_PROBE, audio, 50, step=50)


def test_audio_attribution_of_the_repeated_edge_frames_lands_on_the_frame_they_repeat():
    """The encoder reads EDGE_STEPS steps of copies of the first frame before the clip; a
    network whose first step reads only those copies is explained by the first frame."""
    audio = (1e-4 * np.random.default_rng(1).standard_normal(SAMPLE_RATE)).astype(np.float32)
    audio[:SAMPLE_RATE // 4] += 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(SAMPLE_RATE // 4) / SAMPLE_RATE)
    band = int(log_mel(audio)[:, 0].argmax())
    network = BandNetwork(band - 3, band + 4, delay=EDGE_STEPS)
    result = audio_attribution(get_encoder("random-selfsplice-gru"), AUDIO_PROBE, audio, 25, step=0, network=network)
    assert np.flatnonzero(result.attribution.sum(0) > 1e-6).tolist() == [0]


def test_audio_attribution_of_an_analysed_video_and_its_figure(face_clip):
    probe_id = "random@random-selfsplice-gru"
    result = analyze(face_clip, [probe_id], AnalysisOptions(cache=None))
    attribution = explain_audio(result, probe_id)
    assert isinstance(attribution, AudioAttribution)
    assert attribution.attribution.shape == log_mel(result.clip.audio).shape
    assert np.isfinite(attribution.attribution).all() and attribution.attribution.max() == pytest.approx(1.0)
    assert attribution.logits == pytest.approx(result.probes[probe_id].scores.logits, abs=1e-4)
    figure = audio_attribution_figure(result.clip.audio, explain_audio(result, probe_id, step=10))
    assert isinstance(figure, Figure)
    gids = {artist.get_gid() for ax in figure.axes for artist in ax.get_children()}
    assert {"mel", "attribution", "logit-curve", "explained-step"} <= gids
    with pytest.raises(AnalysisError, match="does not fit"):
        audio_attribution_figure(result.clip.audio[:SAMPLE_RATE], attribution)


def test_audio_attribution_refuses_encoders_without_a_spectrogram_input(tiny_encoders):
    with pytest.raises(AnalysisError, match="log-mel"):
        audio_attribution(get_encoder("random-selfblend-cnn"), AUDIO_PROBE, np.zeros(SAMPLE_RATE, np.float32), 25)


# -- cross-modal ablation --------------------------------------------------------------------

def probe_result(probe_id: str, encoder_id: str, modality: str, logits: list[float], calibration: dict | None,
                 source: str = "trained") -> ProbeResult:
    logits = np.asarray(logits, np.float64)
    card = {"id": probe_id, "encoder": encoder_id, "source": source}
    if calibration is not None:
        card["calibration"] = {"scale": 2.0, "shift": 0.0, "threshold": 0.5, **calibration}
    scores = ProbeScores(logits, sigmoid(2 * logits), float(logits.max()), float(sigmoid(2 * logits.max())))
    return ProbeResult(probe_id, encoder_id, modality, True, card, scores, LinearProbe(np.ones(2), 0.0, card))


def constructed_result(probes: list[ProbeResult]) -> AnalysisResult:
    steps = len(probes[0].scores.logits)
    media = MediaInfo("clip.mp4", "clip.mp4", "0" * 64, 1, "mp4", "h264", 64, 48, 25.0, False, steps / STEP_RATE,
                      steps, True)
    return AnalysisResult(media, {p.probe_id: p for p in probes}, None, None, {}, [], {})


def test_modality_ablation_arithmetic():
    audio_logits = [2.0, 0.0, -2.0, 0.0]
    at_threshold = (float(log_odds(0.3)) + 1.0) / 2  # visual step probability sigmoid(2 s − 1) = 0.3 there
    visual_logits = [0.0, 1.5, 0.0, at_threshold]
    result = constructed_result([
        probe_result("a", "selfsplice-gru", "audio", audio_logits,
                     {"step_scale": 1.0, "step_shift": 0.0, "step_threshold": 0.5}),
        probe_result("v", "selfblend-cnn", "face", visual_logits,
                     {"step_scale": 2.0, "step_shift": -1.0, "step_threshold": 0.3}),
        probe_result("baseline", "random-selfblend-cnn", "face", [9.0] * 4, None, source="random")])
    out = modality_contributions(result)
    assert set(out.evidence) == set(out.ablated) == {"audio", "visual"}  # the baseline is not counted
    assert out.times == pytest.approx([0.0, 0.04, 0.08, 0.12])
    p_audio = sigmoid(np.array(audio_logits))
    p_visual = sigmoid(2 * np.array(visual_logits) - 1)
    assert out.evidence["audio"] == pytest.approx(audio_logits)
    assert out.evidence["visual"] == pytest.approx(2 * np.array(visual_logits) - 1 - np.log(0.3 / 0.7))
    fused_threshold = np.log(0.4 / 0.6)
    assert out.fused == pytest.approx(log_odds((p_audio + p_visual) / 2) - fused_threshold)
    assert out.ablated["audio"] == pytest.approx(log_odds((0.5 + p_visual) / 2) - fused_threshold)
    assert out.ablated["visual"] == pytest.approx(log_odds((p_audio + 0.3) / 2) - fused_threshold)
    # a modality on its own threshold contributes nothing; one above it pushes the fusion up
    assert out.contributions["visual"][3] == pytest.approx(0.0, abs=1e-9)
    assert out.contributions["audio"][1] == pytest.approx(0.0, abs=1e-9)
    assert out.contributions["audio"][0] > 0 > out.contributions["audio"][2]
    assert set(out.to_dict()) == {"times", "fused", "evidence", "ablated", "contributions"}


def test_modality_ablation_needs_a_counted_probe():
    result = constructed_result([probe_result("baseline", "random-selfblend-cnn", "face", [1.0, 2.0], None,
                                              source="random")])
    with pytest.raises(AnalysisError, match="only baselines"):
        modality_contributions(result)



@pytest.mark.parametrize("batch", [32, 10])
def test_the_audio_integrated_gradients_are_captums(batch):
    """The audio attribution's own integrated gradients (Gauss–Legendre, 32 points) give
    captum's numbers, in one batch or several."""
    from captum.attr import IntegratedGradients

    from explain.audio_attribution import integrated_gradients

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv1d(8, 16, 5, padding=2), torch.nn.GELU(),
                                  torch.nn.Conv1d(16, 1, 3, padding=1))

    def score(x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(network(x)[:, 0], 1)

    spectrogram, floor = torch.randn(1, 8, 40), torch.full((1, 8, 40), -1.0)
    ours = integrated_gradients(score, spectrogram, floor, 32, batch)
    captums = IntegratedGradients(score).attribute(spectrogram, floor, n_steps=32, internal_batch_size=32)
    assert ours.shape == captums.shape and torch.allclose(ours, captums, atol=1e-8)
    assert ours.abs().max() > 1e-3  # not trivially zero
