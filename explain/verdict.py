"""The verdict: what one analysis says about its video, with how far to trust it.

Every trained probe's length-robust score goes through its card's calibration
(`models.calibration`); its steps above the threshold make fake segments. Probes are
grouped by modality (audio; visual: face, lip and frame encoders; audio-visual), the sync
scorer adds the offset between mouth and speech. The clip is

- `fake` when a modality calls it fake (a video is fake if any part of it is),
- `real` when every modality that should be checked calls it real with a margin,
- `uncertain` otherwise: a score under its threshold whose odds do not favour real by
  UNCERTAIN_LOG_ODDS (a factor e) below even odds or the threshold, whichever is lower (a
  threshold set for 1 % false fakes sits high: between even odds and it, a clip is not
  called fake, but it is not more likely real either), probes of one modality on both
  sides of it, input outside what the probes were trained on (face too small or not
  found, audio too short or missing, or the whole clip above the level of every real
  validation clip), or only baselines ran.

Random-init encoders and untrained heads are baselines: they are reported, never counted.
Caveats say what the verdict rests on (synthetic training data, no calibration, a failed
sanity check, out-of-distribution input).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explain.temporal import predicted_segments, segment_score
from models.analysis import AnalysisResult, ProbeResult
from models.calibration import SEGMENT_S, CalibratedScores, Calibration, calibrate
from models.encoders import get_spec
from models.sync import AGREEMENT_SCORER_ID, SYNC_SCORER_ID, SyncResult
from models.timing import SAMPLES_PER_STEP, STEP_RATE

UNCERTAIN_LOG_ODDS = 1.0  # real only this far in log-odds below even odds (or a lower threshold)
MIN_SEGMENT_S = SEGMENT_S
MERGE_GAP_S = 0.2
MIN_FACE_PX = 48  # median face height in source pixels below which visual probes are out of their depth
MIN_FACE_FOUND = 0.5  # share of steps with a detected face
MIN_SPEECH_S = 1.0  # voiced audio below which audio probes are out of their depth
SPEECH_DB = 35.0  # a step is voiced within this many dB of the loudest
MODALITY_GROUPS = {"audio": "audio", "face": "visual", "lips": "visual", "frame": "visual",
                   "audio-visual": "audio-visual"}


@dataclass
class ProbeVerdict:
    probe_id: str
    group: str
    calibrated: CalibratedScores
    baseline: bool  # random-init encoder or untrained head: shown, never counted
    synthetic: bool  # trained on synthetic data

    def to_dict(self) -> dict:
        cal = self.calibrated
        return {"probe": self.probe_id, "modality": self.group, "baseline": self.baseline,
                "clip_score": round(cal.clip_score, 6), "p_fake": round(cal.p_fake, 6),
                "threshold": cal.calibration.threshold, "step_threshold": cal.calibration.step_threshold,
                "calibrated": cal.calibration.fitted,
                "calibration": cal.calibration.method, "score": cal.calibration.score,
                "level": round(cal.level, 6), "level_limit": cal.calibration.level_limit,
                "step_probabilities": [round(float(p), 6) for p in cal.step_probabilities]}


@dataclass
class Verdict:
    label: str
    p_fake: float | None
    threshold: float | None
    modalities: dict[str, dict]
    segments: list[dict]
    av_offset_s: float | None
    caveats: list[str]
    probes: list[ProbeVerdict] = field(default_factory=list)
    p_fake_from: str | None = None  # the modality whose calibrated P(fake) is shown: the most suspicious one

    @property
    def decided_by(self) -> list[str]:
        """The modalities whose label is the clip's."""
        return [name for name, modality in self.modalities.items() if modality["label"] == self.label]

    def to_dict(self) -> dict:
        return {"label": self.label, "p_fake": None if self.p_fake is None else round(self.p_fake, 6),
                "threshold": self.threshold, "p_fake_from": self.p_fake_from, "decided_by": self.decided_by,
                "modalities": self.modalities, "segments": self.segments,
                "av_offset_s": self.av_offset_s, "caveats": self.caveats,
                "probes": [p.to_dict() for p in self.probes]}


def headline(verdict: dict) -> str:
    """What stands beside the label (the CLI and the app show the same): the most suspicious
    modality's calibrated P(fake) against its threshold, and which modalities made the call,
    so a label decided elsewhere (by the A/V offset alone, say) does not read as contradicted."""
    parts = []
    if verdict["p_fake"] is not None:
        parts.append(f"calibrated P(fake) {verdict['p_fake']:.3f} · threshold {verdict['threshold']:.3f} "
                     f"({verdict['p_fake_from']})")
    if verdict["label"] != "uncertain" and verdict["decided_by"]:
        parts.append(f"decided by: {', '.join(verdict['decided_by'])}")
    return " · ".join(parts)


def modality_detail(modality: dict) -> str:
    """What one modality's verdict rests on, in words: its P(fake) against its threshold, the
    A/V offset, and why it could not decide (the CLI and the app show the same)."""
    parts = []
    if modality.get("p_fake") is not None:
        parts.append(f"P(fake) {modality['p_fake']:.3f} (threshold {modality['threshold']:.3f})")
    if modality.get("offset_s") is not None:
        parts.append(f"offset {modality['offset_s']:+.2f} s (positive: video lags)")
    if modality.get("reason"):
        parts.append(f"— {modality['reason']}")
    return " ".join(parts)


def real_recordings_warning(probe_id: str, card: dict) -> str | None:
    """A caveat when the probe's card records that it called more real recordings (kept out
    of its training) fake than the target rate allows; None when it does not, or was not measured."""
    measured = card.get("metrics", {}).get("generalisation", {}).get("real_recordings")
    target = card.get("metrics", {}).get("generalisation", {}).get("targets", {}).get("false_fake", 0.05)
    if not measured or measured.get("single", 0.0) <= target:
        return None
    return (f"{probe_id}: on {measured['clips']} real recordings kept out of its training it called "
            f"{measured['single']:.0%} fake (target {target:.0%}): its 'fake' is weak evidence on real footage")


def is_baseline(probe: ProbeResult) -> bool:
    """Random-init encoder or untrained (random) head."""
    return get_spec(probe.encoder_id).source == "random" or probe.card.get("source") == "random" \
        or str(probe.card.get("training_data", "")) == "none"


def probe_verdict(probe: ProbeResult) -> ProbeVerdict:
    calibrated = calibrate(probe.scores.logits, Calibration.from_card(probe.card))
    return ProbeVerdict(probe.probe_id, MODALITY_GROUPS.get(probe.modality, probe.modality), calibrated,
                        is_baseline(probe), bool(probe.card.get("synthetic")))


def build_verdict(result: AnalysisResult, sanity_failed: list[str] | None = None) -> Verdict:
    """The verdict of one analysis; `sanity_failed` names probes whose maps failed the sanity check."""
    verdicts = [probe_verdict(p) for p in result.probes.values()]
    counted = [v for v in verdicts if not v.baseline]
    caveats: list[str] = []
    out_of_range = out_of_distribution(result)
    modalities = {group: _modality([v for v in counted if v.group == group], _reasons_for(group, out_of_range))
                  for group in dict.fromkeys(v.group for v in counted)}
    for group, why in out_of_range.items():
        caveats.append(f"{group}: {why}")
        if group == "audio" and group not in modalities:  # audio asked for, none to hear: not checked
            modalities[group] = {"label": "uncertain", "p_fake": None, "threshold": None, "probes": [],
                                 "reason": why}
    for name, scorer, sync in (("sync", SYNC_SCORER_ID, result.sync), ("agreement", AGREEMENT_SCORER_ID,
                                                                       result.agreement)):
        if sync is not None or scorer in result.skipped:
            modalities[name] = _sync_modality(sync, result.skipped.get(scorer, "did not run"))
            if modalities[name]["label"] == "fake":
                caveats.append(f"the audio-visual offset alone ({scorer}) calls the clip fake: it is not calibrated "
                               "and re-encoding can shift audio by a few hundredths of a second")
    baselines = [v.probe_id for v in verdicts if v.baseline]
    if baselines:
        caveats.append("baselines not counted in the verdict (random-init encoder or untrained head): "
                       + ", ".join(baselines))
    if any(v.synthetic for v in counted):
        caveats.append("trained on synthetic manipulations only ("
                       + ", ".join(v.probe_id for v in counted if v.synthetic)
                       + "): not evidence about real-world deepfakes")
    for probe_id, card in ((v.probe_id, result.probes[v.probe_id].card) for v in counted):
        if (warning := real_recordings_warning(probe_id, card)) is not None:
            caveats.append(warning)
    if any(not v.calibrated.calibration.fitted for v in counted):
        caveats.append("not calibrated (" + ", ".join(v.probe_id for v in counted if not v.calibrated.calibration.fitted)
                       + "): P(fake) uses the paper's mapping of the length-robust score")
    for probe_id in sanity_failed or []:
        caveats.append(f"{probe_id}: its heatmaps failed the sanity check: this map does not depend on the model")
    label = _overall_label(modalities, counted)
    if not counted:
        caveats.append("only baselines ran among the probes: none of them can call the clip real or fake")
    scored = [(m["p_fake"], m["threshold"], g) for g, m in modalities.items()
              if g != "sync" and m.get("p_fake") is not None]
    p_fake, threshold, p_fake_from = max(scored, key=lambda row: row[0] - row[1]) if scored else (None, None, None)
    return Verdict(label, p_fake, threshold, modalities, _segments(counted),
                   round(result.sync.offset_s, 4) if result.sync is not None and result.sync.reliable else None,
                   caveats, verdicts, p_fake_from)


def _reasons_for(group: str, out_of_range: dict[str, str]) -> str | None:
    """Why a modality group's input is out of range (audio-visual probes take both)."""
    names = ("audio", "visual") if group == "audio-visual" else (group,)
    reasons = [out_of_range[name] for name in names if name in out_of_range]
    return "; ".join(reasons) or None


def _modality(verdicts: list[ProbeVerdict], out_of_range: str | None) -> dict:
    """One modality's verdict from its counted probes; out-of-range input decides nothing."""
    probabilities = [v.calibrated.p_fake for v in verdicts]
    thresholds = [v.calibrated.calibration.threshold for v in verdicts]
    p_fake, threshold = float(np.mean(probabilities)), float(np.mean(thresholds))
    above = [p >= t for p, t in zip(probabilities, thresholds)]
    below = [clearly_real(p, t) for p, t in zip(probabilities, thresholds)]
    unfamiliar = [v for v in verdicts if v.calibrated.level_out_of_range]
    if out_of_range is not None:
        label, reason = "uncertain", out_of_range
    elif unfamiliar and not any(above):
        label, reason = "uncertain", unfamiliar_reason(unfamiliar)
    elif any(above) and not all(above):
        label, reason = "uncertain", "its probes disagree"
    elif all(above):
        label, reason = "fake", None
    elif all(below) and out_of_range is None:
        label, reason = "real", None
    else:
        label, reason = "uncertain", ("just under the threshold" if max(log_odds(t) - log_odds(p) for p, t in zip(
            probabilities, thresholds)) < UNCERTAIN_LOG_ODDS else "under the threshold, but not clearly real")
    entry = {"label": label, "p_fake": round(p_fake, 6), "threshold": round(threshold, 6),
             "probes": [v.probe_id for v in verdicts]}
    if reason:
        entry["reason"] = reason
    return entry


def clearly_real(p_fake: float, threshold: float) -> bool:
    """Real with a margin: at least UNCERTAIN_LOG_ODDS in log-odds below even odds, or below
    the threshold when that is lower (uncalibrated probes keep 0.5)."""
    return log_odds(min(threshold, 0.5)) - log_odds(p_fake) >= UNCERTAIN_LOG_ODDS


def unfamiliar_reason(verdicts: list[ProbeVerdict]) -> str:
    """Why a clip with no segment standing out is still not called real: its whole level lies
    above every real clip the probe was calibrated on."""
    levels = ", ".join(f"{v.probe_id} {v.calibrated.level:+.2f} > {v.calibrated.calibration.level_limit:+.2f}"
                       for v in verdicts)
    return ("nothing stands out within the clip, but the whole clip scores above every real clip the probe was "
            f"calibrated on (median step logit: {levels}): manipulated throughout, or footage unlike its training")


def log_odds(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 − p)), elementwise, with p kept 1e-9 away from 0 and 1."""
    p = np.clip(np.asarray(p, np.float64), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _sync_modality(sync: SyncResult | None, skipped_reason: str) -> dict:
    """A sync scorer's verdict: its offset when it can judge, else no judgement and why."""
    if sync is None:
        return {"label": "no judgement", "reason": skipped_reason}
    if not sync.reliable:
        return {"label": "no judgement", "reason": "too short, or the lips do not visibly follow the sound"
                if sync.scorer == SYNC_SCORER_ID else "too short, or no lag stands out in the agreement"}
    return {"label": "fake" if sync.flagged else "real", "offset_s": round(sync.offset_s, 4),
            "margin": round(sync.margin, 4), "flagged": sync.flagged}


def _overall_label(modalities: dict[str, dict], counted: list[ProbeVerdict]) -> str:
    """Fake if any modality says so; real only when trained probes ran and every modality
    that judged says real ("no judgement" from the sync scorer neither helps nor vetoes)."""
    labels = [m["label"] for m in modalities.values() if m["label"] != "no judgement"]
    if "fake" in labels:
        return "fake"
    if not counted or "uncertain" in labels or not labels:
        return "uncertain"
    return "real"


def _segments(verdicts: list[ProbeVerdict]) -> list[dict]:
    """Runs of steps above each counted probe's threshold (at least MIN_SEGMENT_S, gaps up to
    MERGE_GAP_S merged), scored by their mean calibrated probability, highest first."""
    segments = []
    for verdict in verdicts:
        probabilities = verdict.calibrated.step_probabilities
        for start, end in predicted_segments(probabilities, verdict.calibrated.calibration.step_threshold,
                                             MIN_SEGMENT_S, MERGE_GAP_S):
            segments.append({"start_s": round(start, 4), "end_s": round(end, 4), "modality": verdict.group,
                             "probe": verdict.probe_id,
                             "score": round(segment_score(probabilities, (start, end)), 6)})
    return sorted(segments, key=lambda s: -s["score"])


def out_of_distribution(result: AnalysisResult) -> dict[str, str]:
    """Per modality group, why the input lies outside what the probes were trained on."""
    reasons = {}
    groups = {MODALITY_GROUPS.get(p.modality, p.modality) for p in result.probes.values()}
    track = result.face_track
    if track is not None and groups & {"visual", "audio-visual"}:
        scale = result.media.height / max(1, track.frame_height)
        heights = (track.face_boxes[:, 3] - track.face_boxes[:, 1]) * scale
        if track.found_fraction < MIN_FACE_FOUND:
            reasons["visual"] = f"a face was found in only {100 * track.found_fraction:.0f} % of the steps"
        elif float(np.median(heights)) < MIN_FACE_PX:
            reasons["visual"] = (f"the face is {np.median(heights):.0f} px high, too small to judge "
                                 f"(at least {MIN_FACE_PX} px)")
    audio = result.clip.audio if result.clip is not None else None
    wanted_audio = bool(groups & {"audio", "audio-visual"}) or any(
        why == "no audio track" for why in result.skipped.values())
    if wanted_audio:
        if audio is None or not result.media.has_audio:
            reasons["audio"] = "the clip has no audio track: the audio was not checked"
        elif (voiced := voiced_seconds(audio)) < MIN_SPEECH_S:
            reasons["audio"] = f"only {voiced:.1f} s of sound: too short to judge (at least {MIN_SPEECH_S:g} s)"
    return reasons


def voiced_seconds(audio: np.ndarray) -> float:
    """Seconds of steps within SPEECH_DB of the loudest step."""
    steps = len(audio) // SAMPLES_PER_STEP
    if steps == 0:
        return 0.0
    energy = (audio[:steps * SAMPLES_PER_STEP].astype(np.float64).reshape(steps, SAMPLES_PER_STEP) ** 2).mean(1)
    if energy.max() <= 0:
        return 0.0
    return float((10 * np.log10(energy / energy.max() + 1e-12) > -SPEECH_DB).sum() / STEP_RATE)
