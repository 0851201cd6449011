"""Checkpoint files: official torch checkpoints, native safetensors files, atomic writes.

Everything here is file handling and knows nothing of the model or the trainer: the model
(`aedfast.model`) turns what is read into an `AEDMAE`, the trainer (`aedfast.training`)
writes its resumable state through `atomic_torch_save` and reads it through `torch_load`.
File formats: docs/design.md §2 (official checkpoints) and §9 (native files).

- Official checkpoints are torch files holding a dict whose key "model" is the state dict;
  they are read with ``torch.load(weights_only=True)``, never unpickling arbitrary objects.
- Native checkpoints are one safetensors file: the state dict, plus metadata
  ``format = "aedfast"``, ``aedfast_version``, ``config`` (JSON) and optional ``extra``.
- Every write goes to a temporary file in the target folder, is flushed to disk and then
  renamed over the target, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = [
    "OFFICIAL_IGNORED", "CheckpointError", "atomic_path", "atomic_torch_save", "atomic_write",
    "check_state",
    "package_version", "read_native", "read_official", "torch_load", "write_native",
]

OFFICIAL_IGNORED = ("erosion", "dilation")  # morphology weights, unused at inference
NATIVE_FORMAT = "aedfast"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded as asked: the message names the problem."""


def package_version() -> str:
    """The installed aedfast version (package metadata), "unknown" outside an install."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aedfast")
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------- atomic writes


def _new_file_mode() -> int:
    """0o666 less the process umask (read from /proc where it can be: setting the umask to
    read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            umask = next(int(ln.split()[1], 8) for ln in f if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (hidden, same suffix: writers that pick the format
    from it still work); on success it is fsynced and renamed over `path` (atomic on POSIX),
    on error it is removed and `path` is left untouched. The one atomic writer of aedfast:
    checkpoints, results, plots and videos all go through it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 -> what open() would have given
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`write(tmp_path)` then an atomic rename onto `path`. Returns `path`."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to `path`, atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------------------- reading


def torch_load(path: str | os.PathLike) -> object:
    """Load a torch file with ``weights_only=True`` on the CPU; CheckpointError (naming the
    file and the problem) for a missing file, a file that is not a torch checkpoint, or one
    that would need arbitrary code to unpickle."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive; very old files are a bare pickle (protocol >= 2)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise CheckpointError(f"{path} is not a torch checkpoint (neither a zip nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():
            raise CheckpointError(f"{path} is not a torch checkpoint: {e}") from None
        raise CheckpointError(
            f"{path}: refusing to load; it holds objects that would need arbitrary code to "
            f"unpickle (loaded with weights_only=True): {str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # zip/pickle errors for files that are not torch checkpoints
        raise CheckpointError(f"{path} is not a torch checkpoint: {e}") from None


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint ({"model": state_dict}; a bare state dict
    is accepted too). Non-tensor entries are dropped."""
    obj = torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict with key 'model', got {type(obj).__name__}")
    state = obj.get("model", None)
    if state is None:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = obj  # a bare state dict: accept it
        else:
            raise CheckpointError(f"{path}: no 'model' key (keys: {sorted(obj)[:10]})")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'model' is a {type(state).__name__}, not a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def check_state(state: dict, own: dict, *, skip: set, source: str) -> None:
    """Raise CheckpointError naming every missing, unexpected or misshaped key of `state`
    against the model's own state dict `own` (keys in `skip` may be missing)."""
    missing = sorted(k for k in own if k not in state and k not in skip)
    unexpected = sorted(k for k in state if k not in own)
    shapes = [
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
        for k in state if k in own and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:8])}"
                        + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}"
                        + (f" (+{len(unexpected) - 8} more)" if len(unexpected) > 8 else ""))
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(f"{source}: " + " | ".join(problems))


def read_native(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                ) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(config dict, state dict, extra metadata) of a native aedfast checkpoint."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a safetensors checkpoint: {e}") from None
    if meta.get("format") != NATIVE_FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file without an aedfast config")
    try:
        config = json.loads(meta["config"])
        extra = json.loads(meta["extra"]) if "extra" in meta else {}
    except ValueError as e:
        raise CheckpointError(f"{path}: bad metadata: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: bad config: not a JSON object")
    return config, state, extra


# ----------------------------------------------------------------------------- writing


def write_native(path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict,
                 extra: dict | None = None) -> Path:
    """Write a native checkpoint (state dict + config + extra) atomically. Returns the path."""
    from safetensors.torch import save_file

    meta = {"format": NATIVE_FORMAT, "aedfast_version": package_version(),
            "config": json.dumps(config)}
    if extra:
        meta["extra"] = json.dumps(extra)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
