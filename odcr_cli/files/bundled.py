"""The bundled models in ``weights/`` (installed as ``odcr_cli.weights``): their registry
``models.json`` and the sha256 manifest ``SHA256SUMS`` that every bundled file is verified against
before use. Torch-free, so that the ONNX path of ``odcr dehaze`` can find and verify a model cheaply.

A registry entry is everything a shipped model is, as data (one :class:`BundledModel`): its files,
what it expects (its output kind, the prior its t refines, the side its network runs at), its
scores on the dev pairs with the command, path and machine that produced them, and the recipe
that reproduces it. ``odcr models`` prints it; the README's table and the model card are checked
against it (tests/test_bundled.py). ``scripts/ship_weights.py`` writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from odcr_cli.files.fsutil import sha256_file
from odcr_cli.errors import BundledModelError

MANIFEST_NAME = "SHA256SUMS"
REGISTRY_NAME = "models.json"


@dataclass(frozen=True)
class VerifiedFile:
    """A bundled file whose sha256 matched the manifest, with that sha256 (hashed once per use)."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class Score:
    """Mean PSNR (dB) and SSIM over a set of pairs."""

    psnr: float
    ssim: float

    def __str__(self) -> str:
        return f"{self.psnr:.2f} / {self.ssim:.3f}"


@dataclass(frozen=True)
class Metrics:
    """A model's scores on the dev pairs, and how they were produced: ``scores`` maps "all" and each
    subset to its :class:`Score`; ``path`` is what ran (backend and graph), ``command`` the command
    that printed them, ``machine`` where (and when)."""

    scores: tuple[tuple[str, Score], ...]
    path: str
    command: str
    machine: str

    def score(self, subset: str = "all") -> Score:
        return dict(self.scores)[subset]

    def line(self) -> str:
        return "; ".join(f"{name} {score}" for name, score in self.scores)


@dataclass(frozen=True)
class BundledModel:
    """One entry of ``models.json``. ``weights`` and ``onnx`` are file names inside ``weights/``;
    ``side`` is the longest side a scattering model's network runs at (the one its weights record;
    None for a direct model, which runs at full resolution); ``recipe`` the commands that made it,
    in order."""

    name: str
    kind: str                 # the generator's output: scattering | image
    weights: str
    onnx: str | None
    parameters: int
    summary: str              # the one-line card: what it is, in words
    side: int | None = None
    t_prior: str = "none"     # what a scattering model's t refines: dcp | none
    metrics: Metrics | None = None
    recipe: tuple[str, ...] = ()
    default: bool = False

    def weights_file(self) -> VerifiedFile:
        return bundled_file(self.weights)

    def onnx_file(self) -> VerifiedFile | None:
        return bundled_file(self.onnx) if self.onnx else None

    def installed(self) -> bool:
        """Whether its weights are here: the base wheel leaves out a model that only PyTorch runs
        (pyproject.toml, exclude-package-data); a checkout's weights/ holds every one."""
        return (bundled_dir() / self.weights).is_file()

    def size_bytes(self) -> int:
        folder = bundled_dir()
        return sum((folder / f).stat().st_size for f in (self.weights, self.onnx) if f and (folder / f).is_file())


def bundled_dir() -> Path:
    """Folder of the bundled models: the installed ``odcr_cli.weights`` or the checkout's ``weights/``."""
    try:
        installed = Path(str(resources.files("odcr_cli.weights")))
        if installed.is_dir():
            return installed
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "weights"


def read_manifest(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` in ``sha256sum`` format -> {file name: hex digest}."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    entries = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.lstrip("*")] = digest
    return entries


def bundled_models() -> list[BundledModel]:
    """Every bundled model, the default first; empty when no registry is installed."""
    path = bundled_dir() / REGISTRY_NAME
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text())
        models = [_entry(m, default=m["name"] == raw["default"]) for m in raw["models"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundledModelError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    return sorted(models, key=lambda m: not m.default)


def _entry(m: dict, default: bool) -> BundledModel:
    """One ``models.json`` entry -> :class:`BundledModel` (KeyError/TypeError/ValueError if damaged)."""
    metrics = m.get("metrics")
    if metrics is not None:
        scores = tuple((name, Score(float(p), float(q))) for name, (p, q) in metrics["dev_pairs"].items())
        metrics = Metrics(scores, str(metrics["path"]), str(metrics["command"]), str(metrics["machine"]))
    side = m.get("side")
    return BundledModel(name=m["name"], kind=m["kind"], weights=m["weights"], onnx=m.get("onnx"),
                        parameters=int(m["parameters"]), summary=m["summary"],
                        side=int(side) if side is not None else None, t_prior=str(m.get("t_prior", "none")),
                        metrics=metrics, recipe=tuple(str(c) for c in m.get("recipe", ())), default=default)


def bundled_model(name: str | None = None) -> BundledModel:
    """The bundled model called ``name`` (None: the default), or BundledModelError."""
    models = bundled_models()
    if not models:
        raise BundledModelError("no bundled model is installed; pass --weights PATH (a generator "
                                ".safetensors, an odcr checkpoint or a CUT net_G.pth)")
    for m in models:
        if (name is None and m.default) or m.name == name:
            return m
    if name is None:
        raise BundledModelError(f"{bundled_dir() / REGISTRY_NAME} names no default model")
    raise BundledModelError(f"no bundled model called {name!r}; `odcr models` lists them "
                            f"({', '.join(m.name for m in models)})")


def bundled_file(name: str) -> VerifiedFile:
    """A bundled file, verified against the manifest, or BundledModelError saying what is wrong."""
    folder = bundled_dir()
    path = folder / name
    if not path.is_file():
        if name in read_manifest(folder):  # listed, not shipped: the base wheel leaves it out
            raise BundledModelError(f"{name} is not in this install (the base wheel leaves out a model only PyTorch "
                                    f"runs): copy weights/{name} from the odcr repository into {folder}, or pass "
                                    f"--weights PATH")
        raise BundledModelError(f"bundled file {name} is missing from {folder}; reinstall odcr or pass --weights PATH")
    expected = read_manifest(folder).get(name)
    if expected is None:
        raise BundledModelError(f"{folder / MANIFEST_NAME} has no entry for {name}")
    actual = sha256_file(path)
    if actual != expected:
        raise BundledModelError(f"bundled {name} is corrupt: sha256 {actual[:12]}... != manifest {expected[:12]}...")
    return VerifiedFile(path, actual)


def bundled_onnx_available(name: str | None = None) -> bool:
    """Does the bundled model ``name`` (None: the default) ship an ONNX export?"""
    try:
        model = bundled_model(name)
    except BundledModelError:
        return False
    return model.onnx is not None and (bundled_dir() / model.onnx).is_file() and model.onnx in read_manifest(bundled_dir())
