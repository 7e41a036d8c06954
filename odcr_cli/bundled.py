"""The bundled default model in ``weights/`` (installed as ``odcr_cli.weights``) and its sha256
manifest. Torch-free, so that the ONNX path of ``odcr dehaze`` can find and verify it cheaply."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from odcr_cli.fsutil import sha256_file

MANIFEST_NAME = "SHA256SUMS"
DEFAULT_WEIGHTS_NAME = "default.safetensors"
DEFAULT_ONNX_NAME = "default.onnx"


class BundledModelError(Exception):
    """The bundled model is missing or fails its checksum; one-line message for the user."""


def bundled_dir() -> Path:
    """Folder of the bundled model: the installed ``odcr_cli.weights`` or the checkout's ``weights/``."""
    try:
        installed = Path(str(resources.files("odcr_cli.weights")))
        if installed.is_dir():
            return installed
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "weights"


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


def bundled_file(name: str = DEFAULT_WEIGHTS_NAME) -> Path:
    """Path of a verified bundled file, or BundledModelError saying what is wrong."""
    folder = bundled_dir()
    path = folder / name
    if not path.is_file():
        raise BundledModelError("no bundled model is installed yet; pass --weights PATH (a generator "
                                ".safetensors, an odcr checkpoint or a CUT net_G.pth)")
    expected = read_manifest(folder).get(name)
    if expected is None:
        raise BundledModelError(f"{folder / MANIFEST_NAME} has no entry for {name}")
    actual = sha256_file(path)
    if actual != expected:
        raise BundledModelError(f"bundled {name} is corrupt: sha256 {actual[:12]}... != manifest {expected[:12]}...")
    return path


def bundled_onnx_available() -> bool:
    return (bundled_dir() / DEFAULT_ONNX_NAME).is_file() and DEFAULT_ONNX_NAME in read_manifest(bundled_dir())
