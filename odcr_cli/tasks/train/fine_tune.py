"""``odcr train --init MODEL``: a run that starts from a trained model's weights and shape (a
fine-tune on the user's own photos; docs/scattering.md, "Your own dehazer").

The model is a bundled model's name (``odcr`` or ``default``: the default), a generator file
(``.safetensors``, an ``odcr train`` checkpoint) or a run folder. The run's generator is the
model's: its width, blocks, output kind, prior, floor of t and the side ``odcr dehaze`` runs it
at (``inference_side``) are kept, so the result runs exactly as the model did; a generator flag
typed that contradicts the model is an error naming it. Only the generator's weights carry over:
the discriminator, head and classifiers start afresh, as the optimisers and the schedule do.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from odcr_cli.core.configs import GeneratorConfig, MethodConfig
from odcr_cli.errors import TrainingError, WeightsError

# Names of the bundled default beside its own (odcr train --init odcr).
DEFAULT_ALIASES = ("odcr", "default")
# The transmission terms need a scattering output: a fine-tune of a direct model drops the ones
# the recipe (not the user) switched on.
_TRANSMISSION_TERMS = ("lambda_dcp", "lambda_tv", "lambda_synth", "lambda_density")


@dataclass(frozen=True)
class InitialWeights:
    """The model a fine-tune starts from: its generator's shape and weights, and where they came from."""

    source: str                       # what the user named (a bundled name, or the file's absolute path)
    path: Path                        # the file read
    sha256: str
    config: GeneratorConfig
    state_dict: dict[str, torch.Tensor]

    def record(self) -> dict[str, str]:
        return {"model": self.source, "path": str(self.path), "sha256": self.sha256}


def load_initial_weights(spec: str) -> InitialWeights:
    """``spec`` (a bundled model's name, a weights file or a run folder) -> its generator, or a
    one-line TrainingError saying what --init takes."""
    from odcr_cli.files.bundled import bundled_model
    from odcr_cli.files.weights_io import load_generator
    from odcr_cli.errors import BundledModelError

    path, sha256, source = Path(spec), None, spec
    if not path.exists():
        try:
            model = bundled_model(None if spec in DEFAULT_ALIASES else spec)
        except BundledModelError as exc:
            raise TrainingError(f"--init {spec}: no such file or folder, and {exc}") from None
        verified = model.weights_file()
        path, sha256, source = verified.path, verified.sha256, model.name
    try:
        loaded = load_generator(path, sha256=sha256)
    except WeightsError as exc:
        raise TrainingError(f"--init {spec}: {exc}") from None
    state = {k: v.detach().clone() for k, v in loaded.generator.state_dict().items()}
    return InitialWeights(source, loaded.path.resolve(), loaded.sha256, loaded.generator.config, state)


def fine_tune_settings(init: InitialWeights, method: MethodConfig, generator: GeneratorConfig,
                       explicit: frozenset[str] | None) -> tuple[MethodConfig, GeneratorConfig]:
    """The run's method and generator: the model's generator (a typed generator flag that
    contradicts it is a TrainingError naming it); the transmission terms off for a direct model
    unless typed (then the run's own check refuses them)."""
    own = init.config
    for f in fields(GeneratorConfig):
        if explicit and f.name in explicit and getattr(generator, f.name) != getattr(own, f.name):
            flag = "--" + f.name.replace("_", "-")
            raise TrainingError(f"--init {init.source}: {flag} {getattr(generator, f.name)} contradicts the model "
                                f"({getattr(own, f.name)}); a fine-tune keeps the model's shape: drop {flag}")
    if own.output != "scattering":
        method = replace(method, **{t: 0.0 for t in _TRANSMISSION_TERMS if not (explicit and t in explicit)})
    return method, own
