"""Performance benchmark: every target of the performance issue in one run, each against a
limit or baseline measured in the same run (ratios, since shared machines are noisy), printed
as one table (target, value, limit, ratio, pass/fail) with the CPU named. Every measured
pipeline runs in its own process, so peak resident memory is its own; that process first
analyses a 1 s clip (the state of a running app after its first request), except the "first
request" row, which pays the one-time costs.

    python -m benchmarks.bench_performance [--out out/bench_performance.json] [--skip-large] [--skip-startup]
                                           [--repeats 5] [--rounds 3] [--heldout-clips 80]

The pipelines of a few seconds run --repeats times in their process and report the run with
the median total: single runs on a shared 2-core machine varied by half; (a) fast and naive
run in --rounds processes each, taking turns, the median reported (a slow spell of the
machine lasts minutes and would otherwise fall on one mode).

Modes: fast = the app's defaults (precision auto: bf16 where the CPU has bf16 units, else
fp32; 16 crops per forward pass; faces detected on every step, two frames at once on two
mediapipe graphs); naive = fp32, one crop per forward pass, faces on every step one frame
at a time, no feature cache: the every-frame, every-stage reference the fast settings must
agree with. Rows:
  (a) end to end on a 10 s 1280×720 25 fps clip with speech: the default scorers (the two
      bundled probes and the A/V sync scorer) and the default spatial explanation (the
      shipped method on the visual probe's top 3 steps, with its randomisation sanity
      check), fast and naive; fast with --face-stride 5 and with --face-tracking (trade-offs);
      a 10-min clip against the 10 s one in the same process (time and peak memory);
  (b) a ViT-L/14 (CLIP architecture, random weights) probe and a VideoMAE-L one on every
      step of the 10 s clip, against their FLOP floor: the model's FLOPs (counted by torch)
      over the GEMM peak of the best precision this CPU has, measured in the same run; on
      CPUs with bf16 units ViT-L/14 also in fp32, for what bf16 changes in the logits;
      ViT-L/14 with --stride 5 (trade-off);
  (c) a wav2vec2-large (XLS-R 300M architecture, random weights) probe, for reference;
  (d) as a user meets it: one cold `cli.py analyze` process on the 10 s clip (start-up and
      report included), a 60-min clip (refused up front), every malformed input refused
      (bench_refusals), and the app through its page endpoint (bench_app: cold start, first
      result of the 10 s clip, re-analysis of the same clip);
  agreement of the fast settings with the naive ones: the per-step logits on the benchmark
  clip, the bundled demo clips and the held-out synthetic test split (generated here: 80
  clips, seed 303, held-out faces and voices, the set the probe cards were evaluated on),
  and the bundled probes' video AUC there.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PROBE_TARGETS = {"demo/audio-selfsplice": "audio", "demo/visual-selfblend": "visual"}  # the labels each is judged on
DEFAULT_PROBES = list(PROBE_TARGETS)  # the bundled probes, the app's default
VIT_L_PROBE = "random@random-clip-vit-l14"
VIDEOMAE_L_PROBE = "random@random-videomae-large"
W2V_LARGE_PROBE = "random@random-wav2vec2-xls-r-300m"
SWITCH_PROBE = "random@selfblend-cnn"  # another probe over the same encoder
MODES = {"fast": {}, "naive": {"precision": "fp32", "batch_frames": 1, "face_stride": 1, "face_workers": 1}}
DEMO_CLIPS = sorted(str(p) for p in (ROOT / "assets" / "demo").glob("*.mp4"))
HELDOUT_SEED = 303  # the synthetic test split of the README and the probe cards
EXPLAIN_STEPS = 3  # heatmaps of the default spatial explanation (the app's and the CLI's default)
# the limits
REAL_TIME_FACTOR = 4.0  # end to end at least 4x real time
FACE_MS_PER_FRAME = 4.0
LOGIT_TOLERANCE = 0.05
FLOOR_FACTOR = 1.25  # large frame encoders within 1.25x their FLOP floor
FIRST_RESULT_S = 3.0
LONG_CLIP_MEMORY_MB = 2560.0
LONG_CLIP_TIME_FACTOR = 65.0  # a 10-min clip (60x the 10 s one) in at most 65x the time
APP_START_S, APP_REPEAT_S, SWITCH_S = 8.0, 0.5, 0.5


# -- the clips -------------------------------------------------------------------------------

def speech_track(seconds: float) -> np.ndarray:
    """`seconds` of speech: espeak-ng sentences back to back where installed, else the
    project's speech-like stand-in."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from models.timing import SAMPLE_RATE
    from research.generator import VOICES, WORDS, speech

    total, parts, index = int(seconds * SAMPLE_RATE), [], 0
    while sum(len(p) for p in parts) < total:
        words = " ".join(WORDS[(7 * index) % len(WORDS):][:9]) or "hello there"
        parts.append(speech(words, VOICES[index % len(VOICES)], 160, 50, seed=index))
        parts.append(np.zeros(SAMPLE_RATE // 5, np.float32))
        index += 1
    return np.concatenate(parts)[:total].astype(np.float32)


def make_clip(path: Path, seconds: float, width: int = 1280, height: int = 720) -> Path:
    """A talking-head-like test clip: the astronaut photo moving over the frame, with speech."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from models.media import write_test_clip
    from research.synthetic import moving_astronaut

    scene = moving_astronaut(int(round(seconds * 25)), width=width, height=height, scale=height / 512 * 0.8)
    return write_test_clip(path, scene.frames, audio=speech_track(seconds))


def concat_copies(source: Path, target: Path, copies: int) -> Path:
    """`copies` copies of a clip back to back, its packets copied without re-encoding (a 10-min
    or 60-min clip in a second, where encoding one would take minutes and tens of GB of frames).
    Each copy's packets are shifted by the clip's length; the audio encoder's priming packet
    (before 0 s) is kept only at the start."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    import av

    with av.open(str(source)) as clip, av.open(str(target), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in clip.streams if s.type in ("video", "audio")}
        packets = [(p.stream.index, p) for p in clip.demux() if p.stream.index in streams and p.dts is not None]
        length = {index: max(p.pts + (p.duration or 0) for i, p in packets if i == index) for index in streams}
        for copy in range(copies):
            for index, packet in packets:
                if copy and packet.pts < 0:
                    continue
                shift = copy * length[index]
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                packet.stream = streams[index]
                out.mux(packet)
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
    return target


# -- one measured pipeline (child process) ---------------------------------------------------

def stage_times(timings: dict[str, float]) -> dict[str, float]:
    """Per-stage seconds from an analysis' timings (encoders, loading and reuse summed)."""
    out = {"decode": 0.0, "faces": 0.0, "crops": 0.0, "load": 0.0, "encode": 0.0, "probes": 0.0}
    for key, value in timings.items():
        name = key.split(" ")[0]
        name = "encode" if name in ("encoder", "cache", "reused") else name
        out[name] = out.get(name, 0.0) + value
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry the
    parent's peak across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pipeline(spec: dict) -> dict:
    """Analyse spec['clip'] with spec['probes'] under spec['options'], then explain it
    (spec['explain']: "default" = the shipped method on the top EXPLAIN_STEPS steps of each
    face-crop probe with its sanity check, as the app and CLI do; "gradcam" = Grad-CAM
    alone); optionally a probe switch; timings (the median of spec['repeats'] runs), peak
    RSS and the logits."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from models.analysis import AnalysisOptions, analyze
    from models.settings import Settings

    options = AnalysisOptions(cache=None, settings=Settings(**spec.get("options", {})))
    repeats = spec.get("repeats", 1)
    if spec.get("warm_clip"):  # the state of a running app after its first request: libraries and models loaded
        timed_analysis(spec["warm_clip"], spec, options)
    reference = {}
    if spec.get("reference_clip"):  # the same pipeline on another clip in this process: a ratio free of drift
        _, seconds, explain_seconds, _ = median_analysis(spec["reference_clip"], spec, options, repeats)
        reference = {"reference_total_s": seconds + explain_seconds}
    result, analysis, explain, stages = median_analysis(spec["clip"], spec, options, repeats)
    out = {**reference, "analysis_s": analysis, "explain_s": explain, "total_s": analysis + explain,
           "stages": stages, "repeats": repeats, "steps": result.media.n_steps,
           "peak_rss_mb": peak_rss_mb(),
           "logits": {pid: r.scores.logits.tolist() for pid, r in result.probes.items()},
           "p_fake": {pid: r.scores.p_fake for pid, r in result.probes.items()}}
    if spec.get("switch"):
        start = time.perf_counter()
        analyze(spec["clip"], spec["switch"], options, previous=result)
        out["switch_s"] = time.perf_counter() - start
    return out


def median_analysis(clip: str, spec: dict, options, repeats: int) -> tuple:
    """`timed_analysis` `repeats` times: the last result, and the analysis seconds, explanation
    seconds and stage times of the run with the median total (on a shared 2-core machine
    single runs of a few seconds vary by half; the logits do not vary)."""
    runs, result = [], None
    for _ in range(repeats):
        result = None  # like the app, which keeps one analysis a session: the last goes before the next
        result, analysis, explain = timed_analysis(clip, spec, options)
        runs.append((analysis + explain, analysis, explain, stage_times(result.timings)))
    _, analysis, explain, stages = median_by(runs, lambda run: run[0])
    return result, analysis, explain, stages


def median_by(items: list, key):
    """The item whose key is the median (the upper one of an even count)."""
    return sorted(items, key=key)[len(items) // 2]


def timed_analysis(clip: str, spec: dict, options) -> tuple:
    """(result, analysis seconds, seconds of the spatial explanation spec['explain'] asks for)."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from explain.spatial import explain_spatial, spatial_probes
    from models.analysis import analyze

    start = time.perf_counter()
    result = analyze(clip, spec["probes"], options)
    analysis = time.perf_counter() - start
    start = time.perf_counter()
    explain = spec.get("explain")
    for probe_id in spatial_probes(result) if explain else []:
        if explain == "default":
            explain_spatial(result, probe_id, k=EXPLAIN_STEPS)
        else:
            explain_spatial(result, probe_id, k=EXPLAIN_STEPS, sanity=False, method="gradcam")
    return result, analysis, time.perf_counter() - start


# (M, K, N) of the matrix products measured for the peak: a square one, and the three of
# the ViT-L/14 blocks on a batch of 16 crops (16 × 257 tokens; qkv, MLP in, MLP out)
PEAK_SHAPES = ((2048, 2048, 2048), (4112, 1024, 3072), (4112, 1024, 4096), (4112, 4096, 1024))


def matmul_peak(dtype_name: str, shapes=PEAK_SHAPES, repeats: int = 5) -> float:
    """Best-of GFLOP/s over matrix multiplies of the given (M, K, N) shapes in this process:
    the machine's peak as the library reaches it, on the encoder's own product shapes as
    well as a square one (which of them runs fastest differs between CPUs)."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    import torch

    dtype = getattr(torch, dtype_name)
    best_rate = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best_rate = max(best_rate, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best_rate


def forward_flops(forward) -> float:
    """FLOPs of one call of `forward()` (an encoder's forward pass) as torch counts them, with
    attention taken apart into the products the counter knows: PyTorch's fused attention
    fast path (and the CPU's fused attention kernel) hide the projections and products
    inside, a third of a ViT's FLOPs, which understated its share of the machine's peak."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False)
        with counter, sdpa_kernel(SDPBackend.MATH):
            forward()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


def run_clips(spec: dict) -> dict:
    """Per-step logits and P(fake) of spec['probes'] on every clip of spec['clips'] under
    spec['options'] (the clips' agreement between modes, not their time)."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from models.analysis import AnalysisOptions, analyze
    from models.settings import Settings

    options = AnalysisOptions(cache=None, settings=Settings(**spec.get("options", {})))
    logits, p_fake = {}, {}
    for clip in spec["clips"]:
        result = analyze(clip, spec["probes"], options)
        logits[clip] = {pid: r.scores.logits.tolist() for pid, r in result.probes.items()}
        p_fake[clip] = {pid: r.scores.p_fake for pid, r in result.probes.items()}
    return {"logits": logits, "p_fake": p_fake}


def heldout_set(folder: Path, clips: int) -> dict[str, list]:
    """The first `clips` clips of the held-out synthetic test split (the generator draws each
    clip from its own index, so they are those of the full 80-clip split): each bundled
    probe's records, labelled by its own modality."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from research.datasets import load_dataset_spec
    from research.generator import generate

    spec = load_dataset_spec(generate(folder, clips, HELDOUT_SEED, split="test", faces="heldout"))
    return {probe_id: spec.read("test", target) for probe_id, target in PROBE_TARGETS.items()}


def heldout_aucs(records: dict[str, list], p_fake: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """Video AUC of each bundled probe over its held-out records (None with one class only)."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from research.evaluation import video_metrics

    return {probe_id: video_metrics([r.label for r in rows], [p_fake[r.path][probe_id] for r in rows])["auc"]
            for probe_id, rows in records.items()}


def card_auc(probe_id: str) -> float | None:
    """The held-out video AUC recorded in a bundled probe's card (for reference)."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from models.zoo import load_probe

    tests = load_probe(probe_id).card.get("metrics", {}).get("test", [])
    return next((t["auc"] for t in tests if t.get("test_set") == "synthetic-test"), None)


def run_efficiency(spec: dict) -> dict:
    """The machine's fp32 and bf16 matmul peaks; the FLOPs of one forward unit of each large
    frame encoder (ViT-L/14: one face crop; VideoMAE-L: one 16-step window) at the precision
    `auto` picks, and the ViT-L/14 forward's GFLOP/s on a batch of 16 crops (FLOPs counted by torch)."""
    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    import torch

    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from models.encoders import get_encoder
    from models.encoders.base import cpu_has_fast_bf16
    from models.encoders.vision import IMAGENET_MEAN, IMAGENET_STD, to_tensor

    # emulated bf16 (no bf16 units) runs at about 1 GFLOP/s: a small matrix suffices there
    native = cpu_has_fast_bf16()
    peaks = {"fp32": matmul_peak("float32"),
             "bf16": matmul_peak("bfloat16", PEAK_SHAPES if native else ((512, 512, 512),), 5 if native else 2)}
    encoder = get_encoder("random-clip-vit-l14")
    crops = np.random.default_rng(0).integers(0, 255, (16, 224, 224, 3), dtype=np.uint8)
    pixels = encoder.preprocess(crops)
    with torch.inference_mode():
        flops = forward_flops(lambda: encoder.forward(pixels))
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            encoder.forward(pixels)
            best = min(best, time.perf_counter() - start)
        video = get_encoder("random-videomae-large")
        window = to_tensor(crops[:1].repeat(video.window, 0), IMAGENET_MEAN, IMAGENET_STD, video.dtype)
        window_flops = forward_flops(lambda: video.network(pixel_values=window[None]))
    precision = "bf16" if encoder.dtype == torch.bfloat16 else "fp32"
    achieved = flops / best / 1e9
    return {"peak_gflops": peaks, "bf16_units": native, "encoder_precision": precision, "vit_l14_gflops": achieved,
            "vit_l14_gflop_per_crop": flops / 16 / 1e9, "vit_l14_s_per_crop": best / 16,
            "videomae_l_gflop_per_window": window_flops / 1e9, "videomae_l_window_steps": video.window,
            "share_of_peak_in_use": achieved / peaks[precision], "share_of_bf16_peak": achieved / peaks["bf16"]}


def child(kind: str, spec: dict) -> dict:
    """Run one measurement in a fresh process and return its JSON."""
    command = [sys.executable, "-m", "benchmarks.bench_performance", "--child", kind, "--spec", json.dumps(spec)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        raise RuntimeError(f"{kind} failed: {run.stderr.strip().splitlines()[-3:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


# -- the report ------------------------------------------------------------------------------

def max_logit_difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def clips_logit_difference(a: dict, b: dict, probe_ids: list[str]) -> float:
    """The largest per-step |logit| difference of `probe_ids` over the clips of two `run_clips` results."""
    return max(max_logit_difference({p: a[clip][p] for p in probe_ids}, {p: b[clip][p] for p in probe_ids})
               for clip in a)


def check(rows: list, name: str, value: float, limit: float | None, unit: str = "", at_least: bool = False,
          note: str = "") -> None:
    """One row of the targets table: the value against its limit (None: for reference), their
    ratio and whether it passes (value <= limit, or >= with `at_least`)."""
    passed = None if limit is None else (value >= limit if at_least else value <= limit)
    rows.append({"check": name, "value": round(float(value), 4), "unit": unit,
                 "limit": None if limit is None else round(float(limit), 4),
                 "ratio": None if not limit else round(float(value) / float(limit), 3),
                 "target": note or ("for reference" if limit is None else f"{'>=' if at_least else '<='} {limit:.4g}"),
                 "pass": passed})


def stage_table(runs: dict[str, dict]) -> str:
    header = f"{'run':<26}{'decode':>8}{'faces':>8}{'crops':>7}{'load':>7}{'encode':>8}{'probes':>7}" \
             f"{'explain':>8}{'total':>8}{'x RT':>6}{'peak MB':>9}"
    lines = [header, "-" * len(header)]
    for name, run in runs.items():
        s = run["stages"]
        lines.append(f"{name:<26}{s['decode']:8.2f}{s['faces']:8.2f}{s['crops']:7.2f}{s['load']:7.2f}"
                     f"{s['encode']:8.2f}{s['probes']:7.3f}{run['explain_s']:8.2f}{run['total_s']:8.2f}"
                     f"{run['total_s'] / (run['steps'] / 25):6.2f}{run['peak_rss_mb']:9.0f}")
    return "\n".join(lines)


def targets_table(rows: list[dict]) -> str:
    width = max(len(r["check"]) for r in rows)
    lines = [f"{'target':<{width}}  {'value':>10}     {'limit':>10}  {'ratio':>7}  result"]
    for r in rows:
        limit = "" if r["limit"] is None else f"{r['limit']:>10}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:>7.3f}"
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r["pass"]]
        lines.append(f"{r['check']:<{width}}  {r['value']:>10} {r['unit']:<3} {limit:>10}  {ratio:>7}  {verdict}"
                     + ("" if r["limit"] is not None or r["target"] == "for reference" else f"  ({r['target']})"))
    return "\n".join(lines)


def cold_cli(clip: str, out: Path, runs: int) -> dict:
    """`cli.py analyze` on `clip` with the defaults in fresh processes (no feature cache: a
    user's first run of a clip): the median wall time and the largest peak memory."""
    # lazy: the parent process stays small
    from benchmarks.bench_refusals import median_run

    return median_run(["analyze", clip, "--out", str(out), "--no-cache"], runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_performance.json"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=600.0, help="the long clip (copies of the short one)")
    parser.add_argument("--skip-large", action="store_true", help="leave out (b) and (c) (minutes on 2 cores)")
    parser.add_argument("--skip-startup", action="store_true", help="leave out (d): the CLI and app processes")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs of each short pipeline in its process; the median is reported")
    parser.add_argument("--rounds", type=int, default=3,
                        help="processes of (a) fast and of (a) naive, in turns (and of each CLI run); "
                             "the median is reported")
    parser.add_argument("--heldout-clips", type=int, default=80,
                        help="clips of the held-out synthetic split for the AUC check (0: leave it out)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.spec)
        run = {"efficiency": run_efficiency, "clips": run_clips, "pipeline": run_pipeline}[args.child]
        print(json.dumps(run(spec)))
        return 0

    # lazy: each measuring child process loads only what its figure needs (peak memory is one)
    from benchmarks.machine import cpu_line, describe_cpu
    from models.encoders.base import cpu_has_fast_bf16
    from models.encoders.videomae import window_starts
    from models.zoo import DEFAULT_SCORERS

    scorers = list(DEFAULT_SCORERS)
    copies = max(1, round(args.long_seconds / args.seconds))
    runs, rows, user = {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        short = str(make_clip(Path(tmp) / "short.mp4", args.seconds))
        long = str(concat_copies(Path(short), Path(tmp) / "long.mp4", copies))
        warm = str(make_clip(Path(tmp) / "warm.mp4", 1.0))
        print(f"{cpu_line()}; clips: {args.seconds:g} s and {copies * args.seconds:g} s, 1280×720, 25 fps, speech; "
              f"every run but the first-request one in a process warmed up on a 1 s clip", flush=True)
        default = {"probes": scorers, "explain": "default", "warm_clip": warm, "repeats": args.repeats}
        runs["(a) fast, first request"] = child("pipeline", {"clip": short, "probes": scorers, "explain": "default"})
        rounds = {mode: [] for mode in MODES}
        for _ in range(args.rounds):  # fast and naive take turns: a slow spell of the machine hits both
            for mode, options in MODES.items():
                rounds[mode].append(child("pipeline", {**default, "clip": short, "options": options,
                                                       "switch": [SWITCH_PROBE]}))
        for mode, mode_runs in rounds.items():
            runs[f"(a) {mode}"] = median_by(mode_runs, lambda run: run["total_s"])
        for name, options in {"face stride 5": {"face_stride": 5}, "face tracking": {"face_tracking": True}}.items():
            runs[f"(a) fast, {name}"] = child("pipeline", {**default, "clip": short, "options": options})
        runs[f"(a) fast, {copies * args.seconds:g} s clip"] = child(
            "pipeline", {**default, "clip": long, "reference_clip": short, "repeats": 1})
        if not args.skip_large:
            large = {"clip": short, "explain": "gradcam", "warm_clip": warm}
            runs["(b) ViT-L/14 fast"] = child("pipeline", {**large, "probes": [VIT_L_PROBE]})
            if cpu_has_fast_bf16():  # the fast run used bf16: measure what that changes
                runs["(b) ViT-L/14 fp32"] = child("pipeline", {**large, "probes": [VIT_L_PROBE], "explain": None,
                                                               "options": {"precision": "fp32"}})
            runs["(b) ViT-L/14 stride 5"] = child("pipeline", {**large, "probes": [VIT_L_PROBE], "explain": None,
                                                               "options": {"stride": 5}})
            runs["(b) VideoMAE-L fast"] = child("pipeline", {**large, "probes": [VIDEOMAE_L_PROBE], "explain": None})
            for mode, options in MODES.items():
                runs[f"(c) wav2vec2-large {mode}"] = child("pipeline", {"clip": short, "probes": [W2V_LARGE_PROBE],
                                                                        "options": options, "warm_clip": warm,
                                                                        "repeats": args.repeats})
            efficiency = child("efficiency", {})
        demo_probes = DEFAULT_PROBES + ([VIT_L_PROBE] if not args.skip_large and cpu_has_fast_bf16() else [])
        demo = {mode: child("clips", {"clips": DEMO_CLIPS, "probes": demo_probes, "options": options})
                for mode, options in MODES.items()}
        if args.heldout_clips:
            records = heldout_set(Path(tmp) / "heldout", args.heldout_clips)
            clips = [r.path for r in next(iter(records.values()))]
            heldout = {mode: child("clips", {"clips": clips, "probes": DEFAULT_PROBES, "options": options})
                       for mode, options in MODES.items()}
            aucs = {mode: heldout_aucs(records, run["p_fake"]) for mode, run in heldout.items()}
        if not args.skip_startup:
            # lazy: the app and refusal benchmarks load gradio and the CLI only here
            from benchmarks.bench_app import one_run, warm_run
            from benchmarks.bench_refusals import measure, run_cli

            user["cli"] = cold_cli(short, Path(tmp) / "cli", args.rounds)
            hour = concat_copies(Path(short), Path(tmp) / "hour.mp4", round(3600 / args.seconds))
            user["hour"] = run_cli(["analyze", str(hour), "--out", str(Path(tmp) / "hour")])
            user["refusals"] = measure(args.rounds)
            user["app"] = {**one_run(Path(short)), **warm_run(Path(short))}
    print(stage_table(runs))

    fast, naive = runs["(a) fast"], runs["(a) naive"]
    clip_s = args.seconds
    check(rows, f"(1) end to end, {clip_s:g} s clip, default scorers + default spatial explanation", fast["total_s"],
          clip_s / REAL_TIME_FACTOR, "s")
    check(rows, "(1)   of which the analysis (no explanation)", fast["analysis_s"], None, "s")
    check(rows, "(1)   same, first request in a new process", runs["(a) fast, first request"]["total_s"], None, "s")
    check(rows, "(1)   same, naive (every frame, every stage, fp32)", naive["total_s"], None, "s")
    check(rows, "(1) face stage per frame", 1000 * fast["stages"]["faces"] / fast["steps"], FACE_MS_PER_FRAME, "ms")
    check(rows, "(1) max |logit| fast vs naive, benchmark clip", max_logit_difference(fast["logits"], naive["logits"]),
          LOGIT_TOLERANCE)
    for probe_id in demo_probes:
        check(rows, f"(1) max |logit| fast vs naive, demo clips, {probe_id}",
              clips_logit_difference(demo["fast"]["logits"], demo["naive"]["logits"], [probe_id]), LOGIT_TOLERANCE)
    if args.heldout_clips:
        check(rows, f"(1) max |logit| fast vs naive, {args.heldout_clips} held-out clips",
              clips_logit_difference(heldout["fast"]["logits"], heldout["naive"]["logits"], DEFAULT_PROBES),
              LOGIT_TOLERANCE)
        for probe_id in PROBE_TARGETS:
            fast_auc, naive_auc = aucs["fast"][probe_id], aucs["naive"][probe_id]
            recorded = card_auc(probe_id)
            check(rows, f"(1) held-out video AUC fast - naive, {probe_id}", abs((fast_auc or 0) - (naive_auc or 0)),
                  0.005, note=f"fast {fast_auc:.4f}, card {recorded if recorded is None else round(recorded, 4)}")
    for name in ("face stride 5", "face tracking"):
        trade = runs[f"(a) fast, {name}"]
        check(rows, f"(1) trade-off: {name}, end to end", trade["total_s"], None, "s")
        check(rows, f"(1) trade-off: {name}, max |logit| vs every step",
              max_logit_difference(trade["logits"], fast["logits"]), LOGIT_TOLERANCE)
    if not args.skip_large:
        peaks = efficiency["peak_gflops"]
        best = "bf16" if efficiency["bf16_units"] and peaks["bf16"] > peaks["fp32"] else "fp32"
        vit, videomae = runs["(b) ViT-L/14 fast"], runs["(b) VideoMAE-L fast"]
        floors = {"ViT-L/14": efficiency["vit_l14_gflop_per_crop"] * vit["steps"] / peaks[best],
                  "VideoMAE-L": efficiency["videomae_l_gflop_per_window"]
                  * len(window_starts(videomae["steps"], efficiency["videomae_l_window_steps"])) / peaks[best]}
        for name, run in (("ViT-L/14", vit), ("VideoMAE-L", videomae)):
            check(rows, f"(2) {name} every step, analysis / FLOP floor ({efficiency['encoder_precision']} in use, "
                        f"floor at the {best} peak)", run["analysis_s"] / floors[name], FLOOR_FACTOR, "x")
            check(rows, f"(2)   {name} analysis", run["analysis_s"], None, "s")
            check(rows, f"(2)   {name} FLOP floor", floors[name], None, "s")
        if "(b) ViT-L/14 fp32" in runs:
            fp32_run = runs["(b) ViT-L/14 fp32"]
            check(rows, "(2) ViT-L/14 max |logit| bf16 vs fp32, benchmark clip",
                  max_logit_difference(vit["logits"], fp32_run["logits"]), LOGIT_TOLERANCE)
            check(rows, "(2)   ViT-L/14 fp32 analysis", fp32_run["analysis_s"], None, "s")
        check(rows, f"(2) ViT-L/14 forward, share of the {efficiency['encoder_precision']} matmul peak",
              efficiency["share_of_peak_in_use"], None)
        check(rows, "(2) ViT-L/14 Grad-CAM on 3 steps", vit["explain_s"], None, "s")
        check(rows, "(2) trade-off: ViT-L/14 --stride 5 analysis", runs["(b) ViT-L/14 stride 5"]["analysis_s"], None,
              "s")
        for mode in MODES:
            check(rows, f"(c) wav2vec2-large {mode}", runs[f"(c) wav2vec2-large {mode}"]["total_s"], None, "s")
    long_run = runs[f"(a) fast, {copies * args.seconds:g} s clip"]
    check(rows, f"(4) {copies * args.seconds:g} s clip peak memory", long_run["peak_rss_mb"], LONG_CLIP_MEMORY_MB, "MB")
    check(rows, f"(4) {copies * args.seconds:g} s / {clip_s:g} s clip time (one process)",
          long_run["total_s"] / long_run["reference_total_s"], LONG_CLIP_TIME_FACTOR * copies / 60, "x")
    check(rows, "(6) switching probe (first analysis reused)", fast["switch_s"], SWITCH_S, "s")
    if user:
        hour = user["hour"]
        refused = hour["exit"] == 2 and "600" in hour["stderr"] and "Traceback" not in hour["stderr"]
        check(rows, "(4) 60-min clip refused up front, naming the limit", hour["seconds"], 1.0, "s",
              note="<= 1 s" if refused else f"NOT REFUSED: {hour['stderr'][-200:]}")
        rows[-1]["pass"] = rows[-1]["pass"] and refused
        for row in user["refusals"]:
            limit = 2.0 if row["input"].startswith("--out") else 1.0
            check(rows, f"(5) refusal: {row['input']}", row["seconds"], limit, "s")
            rows[-1]["pass"] = rows[-1]["pass"] and row["message_ok"]
            check(rows, f"(5)   peak memory: {row['input']}", row["peak_rss_mb"], 200.0, "MB")
        app = user["app"]
        check(rows, f"(3) app: first result (audio verdict) of the {clip_s:g} s clip", app["first_result_s"],
              FIRST_RESULT_S, "s")
        check(rows, f"(3)   app: the whole first analysis of the {clip_s:g} s clip", app["first_analysis_s"], None, "s")
        check(rows, f"(3)   app: first result of the {clip_s:g} s clip dropped once the warm-up ended",
              app["first_result_when_warm_s"], FIRST_RESULT_S, "s")
        check(rows, "(6)   app: cold start to ready to analyse (warm-up ended)", app["startup_to_warm_s"], None, "s")
        check(rows, "(6) app: cold start to serving", app["startup_to_ready_s"], APP_START_S, "s")
        check(rows, "(6) app: re-analysis of the same clip", app["cached_reanalysis_s"], APP_REPEAT_S, "s")
        cli = user["cli"]
        check(rows, f"(7) one cold `cli.py analyze` of the {clip_s:g} s clip, defaults", cli["seconds"], clip_s, "s")
        rows[-1]["pass"] = rows[-1]["pass"] and cli["exit"] == 0

    print()
    print(targets_table(rows))
    if not args.skip_large:
        print(f"\nmatmul peak: fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s (bf16 units: "
              f"{efficiency['bf16_units']}); ViT-L/14 forward {efficiency['vit_l14_gflop_per_crop']:.1f} GFLOP per "
              f"crop at {efficiency['vit_l14_gflops']:.1f} GFLOP/s ({efficiency['encoder_precision']}); VideoMAE-L "
              f"{efficiency['videomae_l_gflop_per_window']:.0f} GFLOP per 16-step window")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": describe_cpu(), "cpu_line": cpu_line(),
                               "runs": {k: {kk: vv for kk, vv in v.items() if kk != "logits"} for k, v in runs.items()},
                               "checks": rows, "user": user, "efficiency": efficiency if not args.skip_large else None},
                              indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
