"""Dataset readers on small files written in the exact formats, and their errors."""
import json

import pytest

from models.errors import AnalysisError
from research.datasets import load_dataset_spec


def describe(tmp_path, **fields):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"name": "d", "root": ".", **fields}))
    return path


def test_av1m_metadata(tmp_path):
    records = [
        {"file": "train/000001.mp4", "original": None, "split": "train", "modify_type": "real", "fake_segments": [],
         "visual_fake_segments": [], "audio_fake_segments": [], "video_frames": 120, "audio_frames": 76800},
        {"file": "train/000002.mp4", "original": "train/000001.mp4", "split": "train",
         "modify_type": "both_modified", "fake_segments": [[1.2, 1.76]], "visual_fake_segments": [[1.2, 1.76]],
         "audio_fake_segments": [[1.2, 1.76]], "video_frames": 120, "audio_frames": 76800},
        {"file": "train/000003.mp4", "original": "train/000001.mp4", "split": "train",
         "modify_type": "audio_modified", "fake_segments": [[0.4, 0.9]], "visual_fake_segments": [],
         "audio_fake_segments": [[0.4, 0.9]], "video_frames": 120, "audio_frames": 76800},
    ]
    (tmp_path / "train_metadata.json").write_text(json.dumps(records))
    spec = load_dataset_spec(describe(tmp_path, format="av1m", splits={"train": "train_metadata.json"}))
    read = spec.read("train")
    assert [r.label for r in read] == [0, 1, 1]
    assert read[1].manipulation == "both_modified" and read[1].visual_fake_segments == [[1.2, 1.76]]
    assert read[2].truth()["audio_fake_segments"] == [[0.4, 0.9]] and read[2].truth()["visual_fake_segments"] == []
    assert read[0].path == str(tmp_path / "train" / "000001.mp4") and read[0].dataset == "d"


FAVC_HEADER = "source,target1,target2,method,category,type,race,gender,path,filename\n"


def test_fakeavceleb_csv(tmp_path):
    rows = [
        "id00076,-,-,real,A,RealVideo-RealAudio,African,men,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076,00109.mp4",
        "id00076,id00166,-,wav2lip,D,FakeVideo-FakeAudio,African,men,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076,"
        "00109_2_id00166_wavtolip.mp4",
        "id00076,-,-,rtvc,B,RealVideo-FakeAudio,African,men,FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076,"
        "00109_fake.mp4",
        "id00076,id00701,-,faceswap,C,FakeVideo-RealAudio,African,men,FakeAVCeleb/FakeVideo-RealAudio/African/men/"
        "id00076,00109_id00701_faceswap.mp4",
    ]
    (tmp_path / "meta_data.csv").write_text(FAVC_HEADER + "\n".join(rows) + "\n")
    root = tmp_path / "FakeAVCeleb"
    root.mkdir()
    spec = load_dataset_spec(describe(tmp_path, format="favc", root="FakeAVCeleb", splits={"test": "meta_data.csv"}))
    read = spec.read("test")
    assert [(r.manipulation, r.label) for r in read] == [("RealVideo-RealAudio", 0), ("FakeVideo-FakeAudio", 1)]
    assert read[0].path == str(root / "RealVideo-RealAudio/African/men/id00076/00109.mp4")
    spec.favc_pairs = "all"
    assert [r.label for r in spec.read("test")] == [0, 1, 1, 1]


def test_ssr_dfd_csv(tmp_path):
    (tmp_path / "test.csv").write_text("path,label\nreal/a.mp4,0\nfake/b.mp4,1\n")
    spec = load_dataset_spec(describe(tmp_path, format="ssr-csv", splits={"test": "test.csv"}))
    read = spec.read("test")
    assert [(r.relative, r.label) for r in read] == [("real/a.mp4", 0), ("fake/b.mp4", 1)]


def test_folder_layout(tmp_path):
    for sub in ("test/0_real", "test/1_fake/x"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "test/0_real/a.mp4").write_bytes(b"")
    (tmp_path / "test/1_fake/x/b.MOV").write_bytes(b"")
    (tmp_path / "test/1_fake/x/notes.txt").write_text("-")
    spec = load_dataset_spec(describe(tmp_path, format="folder", splits={"test": "test"}))
    assert [(r.relative, r.label) for r in spec.read("test")] == [("test/0_real/a.mp4", 0), ("test/1_fake/x/b.MOV", 1)]


@pytest.mark.parametrize("case,message", [
    ("missing_root", "does not exist"),
    ("no_label_column", "lacks the column(s) label"),
    ("bad_label", "row 3: label '2' is not 0 (real) or 1 (fake)"),
    ("bad_format", "unknown dataset format"),
    ("missing_description", "dataset description not found"),
    ("missing_split", "has no 'val' split"),
])
def test_dataset_errors(tmp_path, case, message):
    (tmp_path / "ok.csv").write_text("path,label\na.mp4,0\nb.mp4,2\n")
    (tmp_path / "nolabel.csv").write_text("path,target\na.mp4,0\n")
    fields = {"format": "ssr-csv", "splits": {"test": "ok.csv"}}
    split = "test"
    if case == "missing_root":
        fields["root"] = "nowhere"
    elif case == "no_label_column":
        fields["splits"] = {"test": "nolabel.csv"}
    elif case == "bad_format":
        fields["format"] = "parquet"
    elif case == "missing_split":
        split = "val"
    path = describe(tmp_path, **fields) if case != "missing_description" else tmp_path / "none.json"
    with pytest.raises(AnalysisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset_spec(path).read(split)


def test_modality_targets_relabel_fakes(tmp_path):
    records = [
        {"file": "a.mp4", "modify_type": "real", "fake_segments": [], "visual_fake_segments": [],
         "audio_fake_segments": []},
        {"file": "b.mp4", "modify_type": "audio_modified", "fake_segments": [[1, 2]], "visual_fake_segments": [],
         "audio_fake_segments": [[1, 2]]},
        {"file": "c.mp4", "modify_type": "visual_modified", "fake_segments": [[1, 2]],
         "visual_fake_segments": [[1, 2]], "audio_fake_segments": []},
    ]
    (tmp_path / "m.json").write_text(json.dumps(records))
    spec = load_dataset_spec(describe(tmp_path, format="av1m", splits={"test": "m.json"}))
    assert [r.label for r in spec.read("test")] == [0, 1, 1]
    assert [r.label for r in spec.read("test", "audio")] == [0, 1, 0]
    assert [r.label for r in spec.read("test", "visual")] == [0, 0, 1]
    with pytest.raises(AnalysisError, match="unknown target"):
        spec.read("test", "lips")
