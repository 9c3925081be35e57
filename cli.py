"""Command line: the same core functions as the app, for batches and scripts. Installed as
`avxplain` (pip install -e .); `python cli.py` is the same.

    avxplain analyze VIDEO [--probe ID ...] --out DIR
    avxplain list encoders | probes
    avxplain probes fetch ID [--from FILE]
    avxplain annotations import|export|list ... [--db URL]
    avxplain align VIDEO --probe ID --out DIR [--db URL]
    avxplain spatial-eval --data DATASET.json --split test --probe ID --out DIR
    (and extract, train, train-anomaly, evaluate, generate, pretrain: see --help)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from explain.truth import load_truth_file
from models.errors import AnalysisError
from models.media import MediaLimits, inspect_media


def _pairs(values: list[str], flag: str, must_exist: bool = False) -> dict[str, str]:
    """ENCODER=PATH arguments as a dictionary; with `must_exist`, every PATH must be a file."""
    pairs = {}
    for value in values or []:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            raise AnalysisError(f"{flag} takes ENCODER=PATH, got {value!r}.")
        if must_exist and not Path(path).is_file():
            raise AnalysisError(f"{flag} {key}: file not found.", path=path, hint="Check the path.")
        pairs[key] = path
    return pairs


def _output_folder(path: str) -> Path:
    """The --out folder, created if needed; refused at once when it cannot hold the report."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise AnalysisError("--out names an existing file; it must be a folder (created if missing).", path=out,
                            hint="Give a folder name, e.g. --out results/.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AnalysisError(f"--out cannot be created ({error.strerror or error}).", path=out) from None
    if not os.access(out, os.W_OK):
        raise AnalysisError("--out is not writable.", path=out, hint="Choose a folder you can write to.")
    return out


class StageBars:
    """One tqdm bar per analysis stage on stderr."""

    def __init__(self):
        self.bar, self.stage = None, None

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            if stage != "done":
                self.bar = tqdm(total=100, desc=f"{stage:<34}", file=sys.stderr, leave=True, mininterval=0.5,
                                bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}")
        if self.bar is not None:
            self.bar.update(int(round(100 * fraction)) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_analyze(args: argparse.Namespace) -> int:
    out = _output_folder(args.out)
    limits = MediaLimits(max_duration_s=args.max_duration, frame_max_side=args.frame_size)
    inspect_media(args.video, limits)  # a bad file is refused here, before torch or any model loads
    truth = load_truth_file(args.truth, Path(args.video).name) if args.truth else None
    weights = _pairs(args.weights, "--weights")
    features = _pairs(args.features, "--features", must_exist=True)
    if args.landmarks == "dlib":
        from models.landmarks import predictor_path  # lazy: the module imports cv2; only this option needs it

        predictor_path()  # dlib asked for but absent: refused here, saying how to install it
    # lazy: torch and the models load only once the arguments and the file have passed these checks
    from explain.reports import write_report
    from models.analysis import AnalysisOptions, analyze
    from models.cache import FeatureCache
    from models.encoders.base import precision_warning
    from models.settings import Settings
    from models.zoo import DEFAULT_SCORERS

    if (note := precision_warning(args.precision)) is not None:
        print(f"warning: {note}", file=sys.stderr)
    settings = Settings(limits=limits, face_stride=args.face_stride, face_tracking=args.face_tracking,
                        landmarks=args.landmarks, stride=args.stride, precision=args.precision, weights=weights)
    options = AnalysisOptions(settings=settings, features=features, cache=None if args.no_cache else FeatureCache())
    bars = StageBars()
    try:
        result = analyze(args.video, args.probe or list(DEFAULT_SCORERS), options, progress=bars)
    finally:
        bars.close()
    written = write_report(result, out, truth, spatial_steps=args.spatial_steps)
    print_verdict(written.report["verdict"])
    print("raw scores (the paper's):")
    for probe_id, probe in result.probes.items():
        print(f"{probe_id:<40} P(fake) = {probe.scores.p_fake:.3f}   S = {probe.scores.video_score:+.3f}")
    if result.fusion:
        print(f"{'fusion (mean probability)':<40} P(fake) = {result.fusion.p_fake:.3f}")
    for probe_id, why in result.skipped.items():
        print(f"{probe_id:<40} skipped: {why}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written.paths.values()))
    return 0


def print_verdict(verdict: dict) -> None:
    """The verdict first: label, calibrated P(fake) against its threshold, per modality,
    segments, the A/V offset and every caveat."""
    # lazy: the verdict module loads the analysis (torch); refusals print before it is needed
    from explain.verdict import headline, modality_detail

    print(f"verdict: {verdict['label'].upper()}   {headline(verdict)}")
    for name, modality in verdict["modalities"].items():
        print(f"  {name:<13} {modality['label']:<12} {modality_detail(modality)}")
    for segment in verdict["segments"][:10]:
        print(f"  fake segment {segment['start_s']:.2f}-{segment['end_s']:.2f} s  {segment['modality']:<8} "
              f"score {segment['score']:.2f}  ({segment['probe']})")
    for caveat in verdict["caveats"]:
        print(f"  caveat: {caveat}")


def cmd_annotations(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from explain.annotations import AnnotationStore, export_exddv, import_exddv

    store = AnnotationStore(args.db)
    if args.action in ("import", "export") and not args.file:
        raise AnalysisError(f"annotations {args.action} needs a CSV file.")
    if args.action == "import":
        report = import_exddv(store, args.file, skip_bad=args.skip_bad)
        print(f"imported {report.imported_clicks} clicks from {report.imported_rows} rows into {store.url}")
        for problem in report.bad_rows:
            print(f"skipped: {problem}")
    elif args.action == "export":
        path = export_exddv(store, args.file, video_name=args.video, annotator=args.annotator)
        print(f"wrote {path}")
    else:
        for click in store.list(video_name=args.video, annotator=args.annotator):
            print(f"{click.id:>6} {click.video_name:<28} frame {click.frame_index:>5}  x {click.x:.4f}  "
                  f"y {click.y:.4f}  {click.annotator:<16} d{click.difficulty} {click.note[:40]!r}")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from explain.alignment import align_clicks, alignment_figure, summarise, write_alignment
    from explain.annotations import AnnotationStore
    from explain.figures import save_figure
    from models.analysis import AnalysisOptions, analyze
    from models.media import file_sha256

    store = AnnotationStore(args.db)
    clicks = store.list(video_sha256=file_sha256(args.video)) or store.list(video_name=Path(args.video).name)
    if not clicks:
        raise AnalysisError("has no clicks in the annotation store.", path=args.video,
                            hint="Annotate it in the app, or import an ExDDV CSV (cli.py annotations import).")
    result = analyze(args.video, [args.probe], AnalysisOptions())
    rows, explanation = align_clicks(result, args.probe, clicks)
    path = write_alignment(rows, explanation.sanity, args.out)
    png, _ = save_figure(alignment_figure(result, rows, explanation), Path(args.out) / "alignment")
    print(json.dumps(summarise(rows)))
    print(f"wrote {path}, {png}")
    return 0


def cmd_spatial_eval(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from explain.alignment import spatial_benchmark

    report = spatial_benchmark(args.data, args.split, args.probe, every=args.every, progress=_counter("explain"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spatial.json").write_text(json.dumps(report, indent=1))
    if args.into_card:
        # lazy: each command imports only what it runs (torch, the models, research code)
        from research.workflows import record_in_card

        print(f"recorded the spatial figures in {record_in_card(args.into_card, 'spatial', report)}")
    for key, value in report.items():
        print(f"{key:<34} {value}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "encoders":
        # lazy: each command imports only what it runs (torch, the models, research code)
        from models.encoders import get_spec, list_encoders

        rows = [get_spec(e).card() for e in list_encoders()]
        if args.json:
            print(json.dumps(rows, indent=1))
        for row in [] if args.json else rows:
            print(f"{row['id']:<28} {row['modality']:<13} {row['source']:<9} {row['dim']:>5}-d  {row['description']}")
        return 0
    # lazy: each command imports only what it runs (torch, the models, research code)
    from models.zoo import list_probes

    entries = list_probes(include_random=args.random)
    if args.json:
        print(json.dumps([{"id": e.id, "encoder": e.encoder, "source": e.source, "available": e.available}
                          for e in entries], indent=1))
        return 0
    for entry in entries:
        state = "ready" if entry.available else "not downloaded"
        print(f"{entry.id:<32} {entry.encoder:<24} {entry.source:<8} {state}")
    return 0


def cmd_probes_fetch(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from models.zoo import fetch_remote

    path = fetch_remote(args.id, source=args.source)
    print(f"{args.id}: verified and stored at {path}")
    return 0


def _counter(label: str):
    bar = tqdm(desc=label, file=sys.stderr, unit="file", mininterval=0.5)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    return update


def _config(args: argparse.Namespace):
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.training import TrainConfig

    return TrainConfig(lr=args.lr, max_epochs=args.epochs, patience=args.patience, seed=args.seed,
                       batch_size=args.batch_size if args.triplet_weight == 0 else max(args.batch_size, 8),
                       triplet_weight=args.triplet_weight, triplet_margin=args.margin,
                       projection_dim=args.projection_dim)


def _research_settings(args: argparse.Namespace):
    # lazy: each command imports only what it runs (torch, the models, research code)
    from models.settings import Settings

    return Settings(face_stride=args.face_stride, precision=args.precision)


def _source(args: argparse.Namespace):
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.workflows import FeatureSource

    return FeatureSource(settings=_research_settings(args))


def cmd_extract(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.workflows import extract

    report = extract(args.data, args.split or ["train", "val", "test"], args.encoder, use_ray=args.ray is not None,
                     ray_address=args.ray or None, settings=_research_settings(args),
                     threads=args.threads, progress=_counter("extract"))
    print(f"extracted {len(report.done)} files, {len(report.cached)} were already cached, "
          f"{len(report.failed)} failed")
    for path, reason in report.failed.items():
        print(f"failed: {path}: {reason}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.workflows import train

    path, probe = train(args.data, args.encoder, args.out, args.name, _config(args), args.attribution, _source(args),
                        progress=lambda epoch, h: print(f"epoch {epoch:3d}  train {h['train_loss']:.4f}  "
                                                        f"val {h['val_loss']:.4f}", file=sys.stderr),
                        target=args.target, real_model=args.with_real_model)
    training, val = probe.card["training"], probe.card["metrics"]["val"]
    print(f"{probe.id}: best epoch {training['best_epoch']} (stopped at {training['stopped_epoch']}), "
          f"val loss {training['best_val_loss']:.4f}, val AUC {val['auc']}")
    print(f"wrote {path} and {path.with_suffix('.safetensors')}")
    return 0


def cmd_train_anomaly(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.workflows import train_anomaly

    path = train_anomaly(args.kind, args.data, args.encoder, args.out, args.visual_encoder, args.name, _config(args),
                         args.width, args.layers, args.heads, _source(args))
    print(f"wrote {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.workflows import evaluate

    report, paths = evaluate(args.probe, args.data, args.out, args.split, _source(args), args.target)
    if args.into_card:
        # lazy: each command imports only what it runs (torch, the models, research code)
        from research.workflows import record_in_cards

        for card in record_in_cards(args.probe, report):
            print(f"recorded the test figures in {card}")
    sets = report["test_sets"]
    print(f"{'AUC %':<40}{'train set':<16}" + "".join(f"{name:>14}" for name in sets))
    for scorer, row in report["matrix"].items():
        cells = "".join(f"{'—' if row[n] is None else f'{100 * row[n]:.1f}':>14}" for n in sets)
        print(f"{scorer:<40}{row['train_set']:<16}{cells}")
    fusion = report["fusion"]
    if fusion:
        aucs = [(fusion.get(n) or {}).get("auc") for n in sets]
        print(f"{'fusion (mean P(fake))':<56}" + "".join(f"{'—' if a is None else f'{100 * a:.1f}':>14}" for a in aucs))
    for path, reason in report["failed_files"].items():
        print(f"failed: {path}: {reason}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.workflows import calibrate, store_calibration

    calibration = calibrate(args.data, args.probe, args.split, _source(args), args.target, args.seed)
    print(json.dumps(calibration.to_card(), indent=1))
    if args.into_card:
        print(f"stored the calibration in {store_calibration(args.into_card, calibration)}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.pretext import PretextConfig, pretrain

    def report(step: int, total: int, loss: float) -> None:
        if step % 50 == 0 or step == total:
            print(f"step {step:5d}/{total}  loss {loss:.4f}", file=sys.stderr, flush=True)

    config = PretextConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           init=args.init)
    path = pretrain(args.encoder, args.data, args.out, config, args.utterances, progress=report)
    print(f"wrote {path} and {path.with_suffix('.safetensors')}: {json.loads(path.read_text())['metrics']}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    # lazy: each command imports only what it runs (torch, the models, research code)
    from research.generator import FAMILIES, generate, generate_families
    from research.realmedia import generate_real_media

    if args.kind == "families":
        description = generate_families(args.out, args.n, args.seed, args.split, args.faces,
                                        tuple(args.family or FAMILIES), progress=_counter("generate"))
    elif args.kind == "real-recordings":
        description = generate_real_media(args.out, args.seed, args.split)
    else:
        description = generate(args.out, args.n, args.seed, args.split, args.faces, progress=_counter("generate"),
                               words_range=(args.words[0], args.words[1] + 1))
    print(f"wrote {args.kind} clips to {Path(args.out) / args.split}; dataset description {description}")
    return 0


def _add_data_options(parser: argparse.ArgumentParser, many: bool, target: bool = False) -> None:
    parser.add_argument("--data", required=True, action="append" if many else None,
                        help="dataset description JSON" + (" (repeat for several)" if many else ""))
    if target:
        parser.add_argument("--target", choices=["any", "audio", "visual"], default="any",
                            help="label videos by any manipulation (default) or by their audio / visual one")
    parser.add_argument("--face-stride", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for NAME.safetensors + NAME.json")
    parser.add_argument("--name", help="probe id (default user/DATASET-ENCODER)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=43)
    parser.add_argument("--batch-size", type=int, default=1, help="videos per step (the paper: 1)")
    parser.add_argument("--triplet-weight", type=float, default=0.0,
                        help="> 0: projection head + batch-all triplet loss (FSFM paper), batches of ≥ 8")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--projection-dim", type=int, default=128)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avxplain", description="Explain audio-visual deepfake probes.")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="score one video with one or more probes")
    analyze.add_argument("video", help="the video file (MP4, MOV, MKV, WebM, AVI)")
    analyze.add_argument("--probe", action="append",
                         help="probe id (repeat for several; default: the bundled offline probes and the "
                              "A/V sync scorer)")
    analyze.add_argument("--out", required=True, help="folder for report.json, temporal.png and temporal.svg")
    analyze.add_argument("--truth", help="AV-Deepfake1M metadata JSON with the true fake segments "
                                         "(default: VIDEO.json or *metadata.json beside the video, if any)")
    analyze.add_argument("--face-stride", type=int, default=1,
                         help="detect faces every N steps and interpolate the track between (default 1: every "
                              "step; larger is faster and moves per-step scores, see docs/PERFORMANCE.md)")
    analyze.add_argument("--face-tracking", action="store_true",
                         help="follow the face with the landmark mesh and detect only once a second and at shot "
                              "cuts (about 2.8× faster face stage; crops move by a pixel or so, which moves "
                              "per-step scores, see docs/PERFORMANCE.md)")
    analyze.add_argument("--landmarks", default="mesh", choices=["mesh", "dlib"],
                         help="where the 68 points that place the lip encoders' mouth region come from: the face "
                              "mesh mapped to the iBUG scheme (default), or dlib's predictor where dlib-bin and "
                              "face-recognition-models are installed (non-commercial model; docs/bench_landmarks.txt)")
    analyze.add_argument("--stride", type=int, default=1,
                         help="run per-frame image encoders (CLIP, FSFM, self-blend CNN) every N steps and "
                              "interpolate their features between (default 1: every step; see docs/PERFORMANCE.md)")
    analyze.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                         help="numeric precision of the encoders (auto: bf16 where the CPU has bf16 units, else fp32)")
    analyze.add_argument("--weights", action="append", metavar="ENCODER=PATH",
                         help="local weights (folder or file) for a hub encoder, or an AV-HuBERT checkpoint (.pt)")
    analyze.add_argument("--features", action="append", metavar="ENCODER=PATH",
                         help="precomputed features (.npy/.npz) for an external encoder (AV-HuBERT, BRAVEn)")
    analyze.add_argument("--max-duration", type=float, default=600.0, help="refuse longer clips (seconds)")
    analyze.add_argument("--frame-size", type=int, default=640, help="longest side frames are kept at")
    analyze.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    analyze.add_argument("--spatial-steps", type=int, default=3,
                         help="Grad-CAM heatmaps for the top N peaks of each face-crop probe (0: none)")
    analyze.set_defaults(run=cmd_analyze)

    annotations = commands.add_parser("annotations", help="the annotation store: import/export ExDDV CSV, list")
    annotations.add_argument("action", choices=["import", "export", "list"])
    annotations.add_argument("file", nargs="?", help="ExDDV CSV to import from / export to")
    annotations.add_argument("--db", help="database URL or SQLite file (default: the app home's annotations.sqlite)")
    annotations.add_argument("--video", help="export/list: only this video name")
    annotations.add_argument("--annotator", help="export/list: only this annotator")
    annotations.add_argument("--skip-bad", action="store_true", help="import: store the good rows, report the bad")
    annotations.set_defaults(run=cmd_annotations)

    align = commands.add_parser("align", help="MAE between human clicks and Grad-CAM maxima for one video")
    align.add_argument("video")
    align.add_argument("--probe", required=True, help="a face-crop probe")
    align.add_argument("--out", required=True, help="folder for alignment.json and alignment.png")
    align.add_argument("--db", help="database URL or SQLite file (default: the app home's annotations.sqlite)")
    align.set_defaults(run=cmd_align)

    spatial = commands.add_parser("spatial-eval", help="pointing game and MAE on a generated set's known regions")
    spatial.add_argument("--data", required=True, help="dataset description of a generated set")
    spatial.add_argument("--split", default="test")
    spatial.add_argument("--probe", required=True)
    spatial.add_argument("--every", type=int, default=2, help="explain every N-th manipulated step")
    spatial.add_argument("--out", required=True, help="folder for spatial.json")
    spatial.add_argument("--into-card", metavar="CARD", help="also store the figures in this probe card (NAME.json)")
    spatial.set_defaults(run=cmd_spatial_eval)

    listing = commands.add_parser("list", help="list encoders or probes")
    listing.add_argument("what", choices=["encoders", "probes"])
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--random", action="store_true", help="also list random@ENCODER heads")
    listing.set_defaults(run=cmd_list)

    extract = commands.add_parser("extract", help="cache features of dataset videos (resumable; --ray to spread)")
    _add_data_options(extract, many=True)
    extract.add_argument("--split", action="append", default=None, help="split(s) to extract (default: all three)")
    extract.add_argument("--encoder", action="append", required=True, help="encoder id (repeat for several)")
    extract.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                         help="run one Ray task per file: a local instance, or the cluster at ADDRESS")
    extract.add_argument("--threads", type=int, default=1,
                         help="torch threads per file (default 1; keep equal across runs that share a cache)")
    extract.set_defaults(run=cmd_extract)

    train = commands.add_parser("train", help="train a probe with the SSR-DFD protocol")
    _add_data_options(train, many=False, target=True)
    train.add_argument("--encoder", required=True)
    train.add_argument("--attribution", choices=["manipulation", "dataset"],
                       help="triplet classes from attribution labels instead of real/fake")
    train.add_argument("--with-real-model", action="store_true",
                       help="add a next-step model trained on the real clips only to the probe's step logits "
                            "(flags steps unlike real footage, whatever made them)")
    _add_training_options(train)
    train.set_defaults(run=cmd_train)

    anomaly = commands.add_parser("train-anomaly", help="train an anomaly proxy on real videos only")
    _add_data_options(anomaly, many=False)
    anomaly.add_argument("--kind", required=True, choices=["next-step", "av-sync"])
    anomaly.add_argument("--encoder", required=True, help="features to model (av-sync: the audio encoder)")
    anomaly.add_argument("--visual-encoder", help="av-sync: the visual encoder")
    anomaly.add_argument("--width", type=int, default=512)
    anomaly.add_argument("--layers", type=int, default=4)
    anomaly.add_argument("--heads", type=int, default=4)
    _add_training_options(anomaly)
    anomaly.set_defaults(run=cmd_train_anomaly)

    evaluate = commands.add_parser("evaluate", help="AUC/AP matrix, localisation, fusion, correlation")
    _add_data_options(evaluate, many=True, target=True)
    evaluate.add_argument("--probe", action="append", required=True,
                          help="probe id, probe card or anomaly-scorer card (repeat for several)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--into-card", action="store_true",
                          help="write the measured figures into the probe cards (NAME.json) given with --probe")
    evaluate.add_argument("--out", required=True)
    evaluate.set_defaults(run=cmd_evaluate)

    calibrate = commands.add_parser("calibrate", help="fit a probe's verdict calibration on a validation split")
    _add_data_options(calibrate, many=False, target=True)
    calibrate.add_argument("--probe", required=True, help="probe id or probe card")
    calibrate.add_argument("--split", default="val")
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the chained validation sequences")
    calibrate.add_argument("--into-card", metavar="CARD", help="store it in this probe card (NAME.json)")
    calibrate.set_defaults(run=cmd_calibrate)

    pretrain = commands.add_parser("pretrain", help="self-supervised pretraining of this project's own encoders")
    pretrain.add_argument("encoder", help="selfblend-cnn (face crops) or selfsplice-gru (speech)")
    pretrain.add_argument("--data", help="dataset description whose train/val videos give the real face crops")
    pretrain.add_argument("--out", default="assets/encoders", help="folder for the weights and card")
    pretrain.add_argument("--steps", type=int, default=1500)
    pretrain.add_argument("--batch-size", type=int, default=32)
    pretrain.add_argument("--lr", type=float, default=5e-4)
    pretrain.add_argument("--seed", type=int, default=7)
    pretrain.add_argument("--init", help="continue from these weights (e.g. assets/encoders/selfsplice-gru.safetensors)")
    pretrain.add_argument("--utterances", type=int, default=600,
                          help="speech pretraining: utterances to synthesise from the wide voice pool "
                               "(every English espeak-ng accent × voice variant but the held-out ones)")
    pretrain.set_defaults(run=cmd_pretrain)
    generate = commands.add_parser("generate", help="synthetic talking-face clips with known manipulations")
    generate.add_argument("--kind", choices=["first", "families", "real-recordings"], default="first",
                          help="first: the first benchmark (feathered mouth swap, re-voicing, desync); families: "
                               "every manipulation family, --n clips each, with real clips and real variants; "
                               "real-recordings: the held-out real speech and face video that packages ship")
    generate.add_argument("--n", type=int, default=8, help="number of clips (families: per family)")
    generate.add_argument("--family", action="append", help="families: only this one (repeat for several; default all)")
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--out", required=True, help="dataset folder (clips, metadata, regions, ExDDV clicks)")
    generate.add_argument("--split", default="train")
    generate.add_argument("--faces", choices=["train", "heldout"], default="train",
                          help="identity group: held-out faces and voices never appear in 'train'")
    generate.add_argument("--words", type=int, nargs=2, default=[7, 9], metavar=("MIN", "MAX"),
                          help="words each clip says (default 7 9: about 3 s)")
    generate.set_defaults(run=cmd_generate)

    probes = commands.add_parser("probes", help="manage released probes")
    probe_commands = probes.add_subparsers(dest="probe_command", required=True)
    fetch = probe_commands.add_parser("fetch", help="download (or import) a released probe, verified by SHA-256")
    fetch.add_argument("id")
    fetch.add_argument("--from", dest="source", help="a local copy of the file instead of downloading")
    fetch.set_defaults(run=cmd_probes_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
