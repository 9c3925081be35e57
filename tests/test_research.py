"""Train → evaluate on a labelled set in AV-Deepfake1M format with known audio
manipulations; anomaly proxies; Ray extraction; the commands' errors."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from models.cache import FeatureCache
from models.calibration import Calibration
from models.encoders import get_spec, register_encoder, unregister_encoder
from models.encoders.base import EncoderSpec
from models.faces import TRACKER_VERSION
from models.probes import load_probe_file
from models.settings import Settings
from research.datasets import load_dataset_spec
from research.extract import extract_dataset
from research.training import TrainConfig
from research.workflows import FeatureSource, evaluate, record_in_cards, train, train_anomaly
from tests.builders import write_av1m_dataset
from tests.cli_runner import run_cli
from tests.test_encoders import TINY_AUDIO, TINY_VIT

ROOT = Path(__file__).resolve().parents[1]
AUDIO_ENCODER = "selfsplice-gru"  # the bundled speech encoder: a random-init XLS-R 300M took 190 s of this test


@pytest.fixture(scope="module")
def tiny_encoders():
    specs = [EncoderSpec("tiny-wav2vec2", "wav2vec2", "audio", "random", 64, None, TINY_AUDIO),
             EncoderSpec("tiny-fsfm", "fsfm", "face", "random", 32, None, TINY_VIT)]
    for spec in specs:
        register_encoder(spec)
    yield [s.id for s in specs]
    for spec in specs:
        unregister_encoder(spec.id)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_av1m_dataset(tmp_path_factory.mktemp("toy"), {"train": 60, "val": 20, "test": 30}, seed=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return FeatureSource(FeatureCache(tmp_path_factory.mktemp("cache")))


@pytest.mark.slow
def test_train_then_evaluate_reaches_the_target_with_a_full_report(toy, source, tiny_encoders, tmp_path):
    probe_card, probe = train(str(toy), AUDIO_ENCODER, tmp_path / "probes", source=source, real_model=True)
    # it carries a next-step model trained on the 30 real training clips, saved and loaded with it
    real_model = json.loads(probe_card.read_text())["real_model"]
    assert real_model["kind"] == "next-step" and real_model["head_unit"] > 0 and real_model["model_unit"] > 0
    assert load_probe_file(probe_card).real_model is not None
    assert probe.card["training"]["lr"] == 1e-3 and probe.card["training"]["patience"] == 10
    assert probe.card["training_data"]["splits"] == {"train": 60, "val": 20}
    # the card names the features it was trained on; for face crops that includes the tracker
    assert probe.card["training_data"]["features"] == Settings(precision="fp32").cache_key(get_spec(AUDIO_ENCODER))
    face_features = source.describe(probe.card["training_data"]["dataset"], "tiny-fsfm")
    assert face_features.endswith(f"tracker{TRACKER_VERSION}")
    triplet_card, triplet = train(str(toy), "tiny-wav2vec2", tmp_path / "probes", source=source,
                                  config=TrainConfig(max_epochs=30, batch_size=8, triplet_weight=0.5),
                                  attribution="manipulation")
    assert triplet.card["training"]["triplet_weight"] == 0.5
    assert json.loads(triplet_card.read_text())["kind"] == "projected"
    next_step = train_anomaly("next-step", str(toy), AUDIO_ENCODER, tmp_path / "anomaly", source=source,
                              config=TrainConfig(max_epochs=5), width=64, layers=2, heads=2)
    av_sync = train_anomaly("av-sync", str(toy), "tiny-wav2vec2", tmp_path / "anomaly", visual_encoder="tiny-fsfm",
                            source=source, config=TrainConfig(max_epochs=5), width=32)
    for card in (next_step, av_sync):
        assert json.loads(card.read_text())["training_data"]["real_train"] == 30  # real videos only

    report, paths = evaluate([str(probe_card), str(triplet_card), str(next_step), str(av_sync)], [str(toy)],
                             tmp_path / "eval", source=source)
    main = next(r for r in report["results"] if r["scorer"] == probe.id)
    assert main["auc"] >= 0.95, main
    assert main["videos"] == 30 and main["missing_features"] == 0
    # localisation over the 15 fake clips only (50 steps each)
    assert main["localisation"]["pooled"]["steps"] == 750 and main["localisation"]["per_video"]["videos"] == 15
    assert record_in_cards([str(probe_card)], report) == [probe_card]
    assert json.loads(probe_card.read_text())["metrics"]["test"][0]["auc"] == main["auc"]
    assert set(report["matrix"]) == {probe.id, triplet.id, "user/toy-next-step-" + AUDIO_ENCODER,
                                     "user/toy-av-sync-tiny-wav2vec2"}
    assert report["matrix"][probe.id]["train_set"] == "toy" and report["matrix"][probe.id]["toy"] == main["auc"]
    # a user-trained probe carries the verdict's calibration, fitted on its validation split
    calibration = Calibration.from_card(json.loads(probe_card.read_text()))
    assert calibration.fitted and calibration.fit_on["split"] == "val" and 0.5 <= calibration.threshold < 1
    # segments scored as the AV-Deepfake1M challenge does, and written in its format
    assert set(main["segments"]["ap"]) == {"0.5", "0.75", "0.9", "0.95"} and set(main["segments"]["ar"]) == {
        "50", "20", "10", "5"}
    proposals = json.loads(next(p for k, p in paths.items() if k.startswith("segments_user_toy")).read_text())
    assert len(proposals) == 30 and all(len(p) == 3 for props in proposals.values() for p in props)
    assert report["fusion"]["scorers"] == [probe.id, triplet.id] and report["fusion"]["toy"]["auc"] is not None
    pearson = np.array(report["correlation"]["toy"]["pearson"])
    assert pearson.shape == (4, 4) and np.allclose(np.diag(pearson), 1)
    assert {"metrics", "matrix", "predictions", "roc_toy", "correlation_toy"} <= set(paths)
    matrix_csv = paths["matrix"].read_text().splitlines()
    assert matrix_csv[0] == "scorer,train_set,toy" and matrix_csv[1].startswith(f"{probe.id},toy,")


@pytest.mark.slow
def test_ray_extraction_is_byte_identical_and_reports_failures(toy, tiny_encoders, tmp_path):
    records = load_dataset_spec(toy).read("train")[:19]
    broken = Path(records[0].path).with_name("broken.mp4")
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 300)
    records.append(type(records[0])(str(broken), 1, "toy", "train", "train/broken.mp4"))
    local = extract_dataset(records, ["tiny-wav2vec2"], FeatureCache(tmp_path / "local"))
    ray = extract_dataset(records, ["tiny-wav2vec2"], FeatureCache(tmp_path / "ray"), use_ray=True)
    for report in (local, ray):
        assert len(report.done) == 19 and list(report.failed) == [str(broken)]
        assert "broken.mp4" in report.failed[str(broken)]

    def digests(root):
        return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(root).rglob("*.npy")}

    assert len(digests(tmp_path / "local")) == 19
    assert digests(tmp_path / "local") == digests(tmp_path / "ray")
    again = extract_dataset(records, ["tiny-wav2vec2"], FeatureCache(tmp_path / "local"))
    assert len(again.cached) == 19 and not again.done  # resumed: nothing recomputed


@pytest.mark.parametrize("command", ["extract", "train", "evaluate"])
def test_commands_report_bad_input_clearly(command, toy, tmp_path):
    (tmp_path / "nolabel.csv").write_text("path,target\na.mp4,0\n")
    (tmp_path / "badlabel.csv").write_text("path,label\na.mp4,0\nb.mp4,real\n")
    cases = {
        "missing root": ({"name": "x", "format": "ssr-csv", "root": "nowhere", "splits": {"train": "a.csv"}},
                         "does not exist"),
        "no path/label": ({"name": "x", "format": "ssr-csv", "root": ".",
                           "splits": {"train": "nolabel.csv", "val": "nolabel.csv", "test": "nolabel.csv"}},
                          "lacks the column(s) label"),
        "bad label": ({"name": "x", "format": "ssr-csv", "root": ".",
                       "splits": {"train": "badlabel.csv", "val": "badlabel.csv", "test": "badlabel.csv"}},
                      "label 'real' is not 0 (real) or 1 (fake)"),
    }
    extra = {"extract": ["--encoder", "random-hubert-large"], "train": ["--encoder", "random-hubert-large", "--out",
             tmp_path / "o"], "evaluate": ["--probe", "random@random-hubert-large", "--out", tmp_path / "o"]}[command]
    for name, (description, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_').replace('/', '_')}.json"
        path.write_text(json.dumps(description))
        run = run_cli(command, "--data", path, *extra)
        assert run.returncode == 2 and "Traceback" not in run.stderr, (name, run.stderr)
        assert message in run.stderr, (name, run.stderr)
    unknown = {"extract": ["--encoder", "nope"], "train": ["--encoder", "nope", "--out", tmp_path / "o"],
               "evaluate": ["--probe", "random@nope", "--out", tmp_path / "o"]}[command]
    run = run_cli(command, "--data", toy, *unknown)
    assert run.returncode == 2 and "unknown encoder 'nope'" in run.stderr and "Traceback" not in run.stderr
