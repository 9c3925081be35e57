"""Every hub loader, exercised with a tiny model of its family saved to a temporary folder
and loaded through the same function the hub path uses; plus the offline behaviour."""
import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.encoders import ClipInputs, create_encoder, get_spec, list_encoders
from models.encoders.base import EncoderSpec, strided_steps
from models.errors import AnalysisError
from models.faces import track_faces
from models.media import StepFrames, decode

TINY_AUDIO = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
              "feat_extract_norm": "layer", "do_stable_layer_norm": True}
TINY_VIDEOMAE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                 "image_size": 224, "patch_size": 32, "num_frames": 16, "tubelet_size": 2}
TINY_VIT = {"patch_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_CLIP_CONFIG = {"embed_dim": 24, "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "patch_size": 32,
                                                    "head_width": 16},
                    "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def inputs(face_clip):
    clip = decode(face_clip)
    return ClipInputs(clip, track_faces(clip.frames))


def tiny_audio_folder(family: str, folder) -> str:
    from models.encoders.audio_ssl import config_class, model_class

    torch.manual_seed(1)
    model_class(family)(config_class(family)(**TINY_AUDIO)).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "hubert"])
def test_audio_ssl_loader_from_saved_folder(family, tmp_path, inputs, register):
    from models.encoders.audio_ssl import model_class

    folder = tiny_audio_folder(family, tmp_path / family)
    spec = register(EncoderSpec(f"tiny-{family}", family, "audio", "hub", 64, folder, TINY_AUDIO))
    encoder = create_encoder(spec.id, precision="fp32")
    features = encoder.encode(inputs)
    assert features.shape == (inputs.n_steps, 64) and features.dtype == np.float32
    # same numbers as the saved model run directly, paired 50 → 25 Hz
    reference = model_class(family).from_pretrained(folder).eval()
    audio = inputs.audio
    normalised = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    with torch.inference_mode():
        hidden = reference(torch.from_numpy(normalised)[None]).last_hidden_state[0].numpy()
    assert hidden.shape[0] in (2 * inputs.n_steps - 1, 2 * inputs.n_steps)
    assert np.allclose(features[:, :32], hidden[0::2][: inputs.n_steps], atol=1e-5)
    assert np.allclose(features[: hidden.shape[0] // 2, 32:], hidden[1::2][: hidden.shape[0] // 2], atol=1e-5)


def test_clip_loader_from_saved_file(tmp_path, inputs, register):
    import open_clip
    from safetensors.torch import save_file

    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "tiny-clip-test.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_dir)
    torch.manual_seed(2)
    model = open_clip.create_model("tiny-clip-test")
    weights = tmp_path / "open_clip_model.safetensors"
    save_file(model.state_dict(), str(weights))
    spec = register(EncoderSpec("tiny-clip", "clip", "face", "hub", 24, str(weights),
                                        {"model_name": "tiny-clip-test"}))
    encoder = create_encoder(spec.id, precision="fp32")
    for name, value in model.visual.state_dict().items():
        assert torch.equal(encoder.network.state_dict()[name], value), name
    features = encoder.encode(inputs)
    assert features.shape == (inputs.n_steps, 24)
    with torch.inference_mode():
        from models.encoders.vision import CLIP_MEAN, CLIP_STD, to_tensor
        direct = model.encode_image(to_tensor(inputs.face_crops[:2], CLIP_MEAN, CLIP_STD, torch.float32))
    assert np.allclose(features[:2], direct.numpy(), atol=1e-5)


def test_videomae_loader_from_saved_folder(tmp_path, inputs, register):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(3)
    VideoMAEModel(VideoMAEConfig(**TINY_VIDEOMAE)).save_pretrained(tmp_path / "videomae")
    spec = register(EncoderSpec("tiny-videomae", "videomae", "face", "hub", 32,
                                        str(tmp_path / "videomae"), TINY_VIDEOMAE))
    features = create_encoder(spec.id, precision="fp32").encode(inputs)
    assert features.shape == (inputs.n_steps, 32)
    # windows every 8 steps: steps near the same window centre share an embedding
    assert np.array_equal(features[0], features[1]) and not np.array_equal(features[0], features[-1])


def test_fsfm_loader_from_mae_checkpoint(tmp_path, inputs, register):
    from models.encoders.vision import build_vit

    spec = EncoderSpec("tiny-fsfm", "fsfm", "face", "hub", 32, None, TINY_VIT, seed=5)
    source = build_vit(spec)
    state = {**source.state_dict(), "decoder_embed.weight": torch.zeros(2, 2), "mask_token": torch.zeros(1)}
    path = tmp_path / "checkpoint-400.pth"
    torch.save({"model": state, "args": argparse.Namespace(model="fsfm_vit_base_patch16"), "epoch": 400}, path)
    register(replace(spec, weights=str(path), seed=0))
    encoder = create_encoder("tiny-fsfm", precision="fp32")
    for name, value in source.state_dict().items():
        assert torch.equal(encoder.network.state_dict()[name], value), name
    assert encoder.encode(inputs).shape == (inputs.n_steps, 32)


def test_fsfm_rejects_a_checkpoint_of_another_model(tmp_path, register):
    path = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    register(EncoderSpec("tiny-fsfm-bad", "fsfm", "face", "hub", 32, str(path), TINY_VIT))
    with pytest.raises(AnalysisError, match="lacks .* encoder weights"):
        create_encoder("tiny-fsfm-bad")


@pytest.mark.parametrize("encoder_id", ["wav2vec2-xls-r-300m", "wavlm-large", "hubert-large", "clip-vit-b16",
                                        "videomae-large", "fsfm-vit-b16"])
def test_hub_encoders_offline_give_one_clear_message(encoder_id):
    spec = get_spec(encoder_id)
    with pytest.raises(AnalysisError) as caught:
        create_encoder(encoder_id)
    message = str(caught.value)
    assert f"cannot load encoder {encoder_id}" in message
    assert spec.download in message and "offline mode is on" in message
    assert "--weights" in message and f"random-{encoder_id}" in message


def test_every_hub_entry_has_a_random_twin_with_the_same_architecture():
    for encoder_id in list_encoders():
        spec = get_spec(encoder_id)
        if spec.source == "hub":
            twin = get_spec(f"random-{encoder_id}")
            assert twin.arch == spec.arch and twin.dim == spec.dim and twin.source == "random"


@pytest.mark.slow
def test_random_large_audio_architecture_matches_the_hub_config(inputs):
    encoder = create_encoder("random-wav2vec2-xls-r-300m", precision="fp32")
    params = sum(p.numel() for p in encoder.model.parameters())
    assert 310e6 < params < 320e6  # XLS-R 300M
    assert encoder.encode(inputs).shape == (inputs.n_steps, 2048)


def test_random_init_is_deterministic(inputs):
    every_clip = inputs.n_steps  # the first and the last step only: two forward passes per encoder
    a = create_encoder("random-clip-vit-b16", precision="fp32").encode(ClipInputs(inputs.clip, inputs.track,
                                                                                 stride=every_clip))
    b = create_encoder("random-clip-vit-b16", precision="fp32").encode(ClipInputs(inputs.clip, inputs.track,
                                                                                 stride=every_clip))
    assert np.array_equal(a, b) and np.abs(a).sum() > 0


def test_external_encoder_needs_its_feature_file(tmp_path, inputs):
    with pytest.raises(AnalysisError, match="--features avhubert-large-av=FILE.npy"):
        create_encoder("avhubert-large-av").encode(inputs)
    features = np.random.default_rng(0).standard_normal((inputs.n_steps - 3, 1024)).astype(np.float32)
    np.savez(tmp_path / "feats.npz", multimodal=features)
    out = create_encoder("avhubert-large-av").encode(ClipInputs(inputs.clip, None, {"avhubert-large-av":
                                                                                  str(tmp_path / "feats.npz")}))
    assert out.shape == (inputs.n_steps, 1024) and np.array_equal(out[-1], features[-1])
    np.save(tmp_path / "wrong.npy", features[:, :10])
    with pytest.raises(AnalysisError, match=r"needs \(steps × 1024\)"):
        create_encoder("braven-large-v").encode(ClipInputs(inputs.clip, None, {"braven-large-v":
                                                                              str(tmp_path / "wrong.npy")}))


def test_unknown_encoder():
    with pytest.raises(AnalysisError, match="unknown encoder 'nope'.*Known encoders"):
        create_encoder("nope")


def test_packaged_speaker_encoder_marks_a_spliced_voice(tmp_path):
    """The GE2E weights ship in the resemblyzer wheel: no download. A segment spoken by
    another voice moves the per-step embeddings away from the clip's mean voice."""
    from models.media import decode, write_test_clip
    from models.timing import SAMPLE_RATE
    from research.generator import speech
    from tests.conftest import gradient_frames

    audio = np.concatenate([speech("the old sailors count their silver coins beside the pier", "en-us", 150, 50, 1),
                            np.zeros(SAMPLE_RATE // 4, np.float32)])
    other = speech("seven bright planets rise above the quiet harbour", "en-us+f4", 150, 80, 2)
    start = int(1.0 * SAMPLE_RATE)
    audio[start:start + SAMPLE_RATE] = other[:SAMPLE_RATE]
    steps = len(audio) * 25 // SAMPLE_RATE
    path = write_test_clip(tmp_path / "splice.mp4", gradient_frames(steps), audio=audio)
    clip = decode(path)
    features = create_encoder("ge2e-speaker").encode(ClipInputs(clip, None))
    assert features.shape == (clip.n_steps, 512)
    assert np.allclose(np.linalg.norm(features[:, :256], axis=1), 1, atol=1e-4)
    deviation = np.linalg.norm(features[:, 256:], axis=1)
    inside = deviation[int(1.2 * 25):int(1.8 * 25)].mean()
    outside = np.concatenate([deviation[int(0.3 * 25):int(0.6 * 25)], deviation[int(2.4 * 25):int(2.8 * 25)]]).mean()
    assert inside > 1.3 * outside, (inside, outside)  # measured 1.45 with the splice, 0.9 without


def test_strided_steps_and_interpolation():
    from models.encoders.base import interpolate_steps, strided_steps

    assert strided_steps(10, 4).tolist() == [0, 4, 8, 9]
    assert strided_steps(9, 4).tolist() == [0, 4, 8]
    assert strided_steps(1, 5).tolist() == [0]
    values = np.array([[0.0], [4.0], [8.0], [9.0]])
    assert interpolate_steps(values, strided_steps(10, 4), 10)[:, 0].tolist() == list(range(10))
    assert interpolate_steps(np.array([[3.0]]), np.array([0]), 3)[:, 0].tolist() == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("stride", [1, 3])
def test_frame_encoder_reads_the_disk_backed_crops_a_batch_at_a_time(inputs, stride):
    """A 10-min clip's face crops (2.3 GB) stay in a temporary file and the encoder reads back
    one batch at a time: its features equal one forward pass over all the crops at once."""
    assert isinstance(inputs.face_crops, StepFrames)
    encoder = create_encoder("random-selfblend-cnn", precision="fp32")
    batched_features = encoder.encode(ClipInputs(inputs.clip, inputs.track, batch_frames=4, stride=stride))
    steps = strided_steps(inputs.n_steps, stride)
    with torch.inference_mode():
        at_once = encoder.forward(encoder.preprocess(np.asarray(inputs.face_crops)[steps])).numpy()
    np.testing.assert_allclose(batched_features[steps], at_once, atol=1e-5)
    assert batched_features.shape == (inputs.n_steps, encoder.spec.dim)
