"""Gradio UI: layout and wiring only; all work is done by models/ and explain/.

    python app.py            # serves on http://127.0.0.1:7860
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr

from explain.reports import write_report
from models.analysis import AnalysisOptions, AnalysisResult, analyze
from models.errors import AnalysisError
from models.zoo import describe_probe, usable_probes

ASSETS = Path(__file__).parent / "assets"
EXAMPLES = [str(p) for folder in ("demo", "examples") for p in sorted((ASSETS / folder).glob("*.mp4"))]
DEFAULT_PROBES = ["random@random-wav2vec2-xls-r-300m"]
STAND_IN_BANNER = ("**Offline stand-ins:** the chosen probes run on random-init encoders or untrained heads. "
                   "Their scores show how the tool works; they are not deepfake detections.")


def probe_choices() -> list[tuple[str, str]]:
    return [(describe_probe(entry), entry.id) for entry in usable_probes()]


def run_analysis(video: str | None, probe_ids: list[str], progress=gr.Progress()):
    if not video:
        raise gr.Error("Upload a video (MP4, MOV, MKV, WebM or AVI) first.")
    try:
        result = analyze(video, probe_ids or [], AnalysisOptions(),
                         progress=lambda stage, fraction: progress(fraction, desc=stage))
    except AnalysisError as error:
        raise gr.Error(str(error)) from None
    paths = write_report(result, tempfile.mkdtemp(prefix="report-"))
    return summary_markdown(result), str(paths["temporal_png"]), [str(p) for p in paths.values()]


def summary_markdown(result: AnalysisResult) -> str:
    lines = []
    if any(p.offline_encoder or p.card.get("source") == "random" for p in result.probes.values()):
        lines.append(f"> {STAND_IN_BANNER}\n")
    lines.append(f"**{result.media.name}** · {result.media.duration_s:.2f} s · {result.media.width}×"
                 f"{result.media.height} · {result.media.n_steps} steps at 25 Hz\n")
    lines.append("| probe | encoder | P(fake) | video score S |\n|---|---|---|---|")
    for probe in result.probes.values():
        lines.append(f"| {probe.probe_id} | {probe.encoder_id} | {probe.scores.p_fake:.3f} | "
                     f"{probe.scores.video_score:+.3f} |")
    if result.fusion:
        lines.append(f"| fusion (mean probability) | | {result.fusion.p_fake:.3f} | |")
    lines += [f"\n- skipped {pid}: {why}" for pid, why in result.skipped.items()]
    lines += [f"\n- warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Audio-visual deepfake probe explorer") as app:
        gr.Markdown("# Audio-visual deepfake probe explorer\nLinear probes over frozen self-supervised "
                    "encoders (SSR-DFD), scored on a 25 Hz clock.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"])
                choices = probe_choices()
                probes = gr.CheckboxGroup(choices=choices, label="Probes",
                                          value=[c for c in DEFAULT_PROBES if c in {v for _, v in choices}])
                button = gr.Button("Analyse", variant="primary")
                if EXAMPLES:
                    gr.Examples(EXAMPLES, inputs=[video])
            with gr.Column():
                summary = gr.Markdown()
                curves = gr.Image(label="Temporal explanation: score s_t, probability sigmoid(2·s_t)",
                                  type="filepath")
                report = gr.File(label="Report (JSON, PNG, SVG)", file_count="multiple")
        button.click(run_analysis, [video, probes], [summary, curves, report], api_name="analyse")
    return app


if __name__ == "__main__":
    build_app().queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size="500mb")
