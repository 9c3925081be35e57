"""Published checkpoints of the natively run encoders (AV-HuBERT, BRAVEn), read safely and
loaded key by key.

- `read_checkpoint` unpickles with torch's weights-only unpickler and an allow-list of inert
  stand-ins for the few fairseq / argparse / numpy / omegaconf classes such files hold, so
  nothing from the file runs; anything else a file names (os.system, …) is refused by name.
- `load_exact` loads a state dict only when every key maps: a missing or unexpected key, or
  a shape the model does not have, fails with its name.
- `for_precision` casts the matrix products' weights once for bf16;
- `CheckpointEncoder` is what such an encoder shares: a feature file when one is given,
  else the model built from `--weights`.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.encoders.base import ClipInputs, EncoderSpec, Progress, fit_steps, resolve_dtype
from models.encoders.external import ExternalFeatures
from models.errors import AnalysisError

# Classes a published checkpoint pickles besides tensors; each is replaced by an inert stand-in.
CHECKPOINT_CLASSES = ("fairseq.data.dictionary.Dictionary", "argparse.Namespace",
                      "fairseq.logging.meters.AverageMeter", "fairseq.logging.meters.TimeMeter",
                      "fairseq.logging.meters.StopwatchMeter", "fairseq.logging.meters.MetersDict",
                      "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
                      "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig")


def _inert_class(full_name: str) -> type:
    """A class that stands where `full_name` stood in the pickle: building it stores what it
    was given and runs nothing."""
    module, _, name = full_name.rpartition(".")

    def __init__(self, *args, **kwargs):  # called by REDUCE with the pickled arguments
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):  # called by BUILD
        self.state = state

    return type(name, (), {"__module__": module, "__qualname__": name, "__init__": __init__,
                           "__setstate__": __setstate__})


STAND_INS = [_inert_class(name) for name in CHECKPOINT_CLASSES]


def read_checkpoint(path: str | Path, family: str, where: str) -> object:
    """What a torch checkpoint file holds (tensors, plain containers and the inert stand-ins),
    or a clear error naming the file: not found, not a torch file, or asking to load code.
    `family` and `where` (where users get the files) go into the messages."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError("checkpoint file not found.", path=path,
                            hint=f"Give the path of the downloaded {family} checkpoint (see README: {where}).")
    with path.open("rb") as handle:
        head = handle.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch's zip format nor a bare pickle
        raise AnalysisError("is not a PyTorch checkpoint (neither a torch.save archive nor a pickle).", path=path,
                            hint=f"Give the {family} checkpoint file as downloaded (see README: {where}).")
    try:
        with torch.serialization.safe_globals(STAND_INS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        raise AnalysisError(f"refused: the checkpoint asks to load {refused.group(1) if refused else 'an object'}, "
                            "which is neither weights nor settings.", path=path,
                            hint=f"Only the published {family} checkpoints are read; nothing from the file was "
                                 "run.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise AnalysisError(f"is not a readable PyTorch checkpoint ({str(error).splitlines()[0]}).",
                            path=path) from None


def load_exact(model: nn.Module, state: dict, source: str, family: str) -> nn.Module:
    """`model` with `state` loaded, every key mapped: a missing or an unexpected key, or a
    shape the model does not have, fails with its name. Returns the model in eval mode."""
    reference = model.state_dict()
    mismatches = [f"{kind} {first_keys(keys)}" for kind, keys in (("missing", sorted(set(reference) - set(state))),
                                                                  ("unexpected", sorted(set(state) - set(reference))))
                  if keys]
    if mismatches:
        raise AnalysisError(f"{source}: the {family} weights do not match the model: {'; '.join(mismatches)}.")
    shapes = [key for key, value in state.items() if tuple(value.shape) != tuple(reference[key].shape)]
    if shapes:
        raise AnalysisError(f"{source}: the shapes of {', '.join(shapes[:5])} do not match the model the "
                            f"checkpoint describes.")
    model.load_state_dict(state)
    return model.eval()


def first_keys(keys: list[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (" …" if len(keys) > shown else "")


def for_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """In bf16, the weights of the matrix products (linear and convolution layers) cast once
    (autocast would cast them again on every forward: 85 ms of 1.3 s for AV-HuBERT on 250
    steps); norms keep fp32, as autocast runs them."""
    if dtype == torch.bfloat16:
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                module.to(torch.bfloat16)
    return model


class CheckpointEncoder(ExternalFeatures):
    """An external encoder that also runs here from its published checkpoint (`--weights
    ENCODER=PATH`): a feature file given for it (`--features`) is read instead, as without a
    checkpoint. Subclasses say how to build the model (`load`) and run it (`compute`)."""

    def __init__(self, spec: EncoderSpec, weights: str | None = None, precision: str = "auto"):
        super().__init__(spec, weights, precision)
        self.dtype = resolve_dtype(precision)  # bf16 on CPUs with bf16 units under "auto"
        self.model = for_precision(self.load(weights), self.dtype) if weights else None

    def load(self, weights: str) -> nn.Module:
        """The network with the checkpoint's weights, every key mapped."""
        raise NotImplementedError

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        """(steps × dim) features of the clip from the model."""
        raise NotImplementedError

    def encode(self, inputs: ClipInputs, progress: Progress = None) -> np.ndarray:
        if self.spec.id in inputs.features or self.model is None:
            return super().encode(inputs, progress)
        features = fit_steps(self.compute(inputs), inputs.n_steps)
        if progress:
            progress(1.0)
        return features

    def inference(self) -> contextlib.ExitStack:
        """No gradients, and bf16 autocast when the weights were cast to bf16."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.autocast("cpu", torch.bfloat16, enabled=self.dtype == torch.bfloat16))
        return stack

    def torch_module(self) -> nn.Module | None:
        return self.model
