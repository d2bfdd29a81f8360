"""Fetching pretrained components listed in :mod:`emocast.registry` (used by ``scripts/download_models.py``).

* Hugging Face files go through ``huggingface_hub.hf_hub_download`` into a staging folder below the models root
  (``.downloads/<repo>``; partial files there are resumed on the next run), then are moved into the component
  folder under the name the registry expects.
* Direct URLs are fetched with resumable HTTP range requests into ``<file>.part``, renamed when complete.
* Before anything is fetched each host is probed with a short timeout, and ``HF_HUB_OFFLINE`` is honoured, so a
  machine without network gets the missing-model report within seconds instead of a traceback.
* ``audio_separator``: audio-separator only runs offline when its metadata JSONs sit next to the ``.onnx``
  (see :func:`write_separator_metadata`); they are fetched with the model, or written locally when only the
  ``.onnx`` is there.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import registry
from .errors import EmoCASTError, MissingModelError

GROUPS = ("inference", "train", "eval", "all")
DEFAULT_GROUP = "train"
CONNECT_TIMEOUT = 4.0  # seconds, for the reachability probe and each HTTP connection
READ_TIMEOUT = 60.0
STAGING = ".downloads"  # below the models root; holds hub downloads in progress


class DownloadError(EmoCASTError):
    """A component could not be fetched (no network, gated repo, server error...)."""


# ---------------------------------------------------------------------------------------------------- selection
def group_components(group: str = DEFAULT_GROUP) -> list[str]:
    """Component names of a group.

    ``inference``: what rendering a video needs; ``train``: the official ``pretrained_models`` layout (inference
    plus the training initialisation, e.g. the AnimateDiff motion module); ``eval``: metric models;
    ``all``: everything in the registry.
    """
    if group not in GROUPS:
        raise EmoCASTError(f"unknown component group {group!r}; choose one of {', '.join(GROUPS)}")
    wanted = {"inference": {"inference"}, "train": {"inference", "train"}, "eval": {"eval"},
              "all": {"inference", "train", "eval"}}[group]
    return [n for n, c in registry.COMPONENTS.items() if c.group in wanted]


def select(group: str = DEFAULT_GROUP, only: Sequence[str] = ()) -> list[str]:
    """``only`` (validated, in registry order) when given, else the components of ``group``."""
    if only:
        unknown = [n for n in only if n not in registry.COMPONENTS]
        if unknown:
            raise EmoCASTError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(registry.COMPONENTS)}")
        return [n for n in registry.COMPONENTS if n in set(only)]
    return group_components(group)


# ---------------------------------------------------------------------------------------------------- check
def check(names: Iterable[str], root=None) -> tuple[list[str], list[str]]:
    """(report lines, names of required components that are missing or incomplete)."""
    names = list(names)
    lines = [registry.report_line(n, root) for n in names]
    bad = [n for n in names if not registry.COMPONENTS[n].optional and registry.status(n, root)[0] != "present"]
    return lines, bad


# ---------------------------------------------------------------------------------------------------- network
def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_offline() -> bool:
    """True when the user asked huggingface_hub to stay offline (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    truthy = {"1", "on", "yes", "true"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def probe(url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """``None`` when a TCP connection to the host of ``url`` opens within ``timeout`` seconds, else the reason.

    Honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` by probing the proxy instead of the host.
    """
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname, p.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:  # DNS failure, refused, unreachable, timeout
        return f"cannot reach {host}:{port} ({err.__class__.__name__}: {err})"


# ---------------------------------------------------------------------------------------------------- fetching
@dataclass(frozen=True)
class Task:
    """One file to fetch: where it goes and where it comes from."""

    component: str
    dest: Path
    repo_id: str | None = None  # hub download when set
    hub_path: str | None = None
    url: str | None = None  # direct URL otherwise

    @property
    def source(self) -> str:
        if self.repo_id:
            return f"{hub_endpoint()}/{self.repo_id} ({self.hub_path})"
        return str(self.url)


def plan(names: Iterable[str], root=None) -> tuple[list[Task], list[str]]:
    """Files to fetch for the named components (missing or empty ones only) and components needing manual steps."""
    tasks: list[Task] = []
    manual: list[str] = []
    for name in names:
        comp = registry.COMPONENTS[name]
        state, _ = registry.status(name, root)
        if state == "present":
            continue
        todo = [f for f in comp.files if _empty(comp.path(root) / f)]
        if name == "audio_separator" and not _empty(comp.path(root) / SEPARATOR_MODEL):
            continue  # only metadata JSONs missing: written locally by finish_component
        for rel in todo:
            dest = comp.path(root) / rel
            if comp.hub_repo and rel in comp.hub_files:
                tasks.append(Task(name, dest, repo_id=comp.hub_repo, hub_path=comp.hub_files[rel]))
            elif rel in comp.urls:
                tasks.append(Task(name, dest, url=comp.urls[rel]))
            else:
                manual.append(name)
                break
    return tasks, manual


def _empty(path: Path) -> bool:
    return not path.is_file() or path.stat().st_size == 0


def fetch_hub_file(task: Task, root=None, token: str | bool | None = None) -> Path:
    """Download one hub file (resumable: partial data stays in the staging folder) and move it into place."""
    from huggingface_hub import hf_hub_download

    staging = registry.models_root(root) / STAGING / task.repo_id.replace("/", "--")
    try:
        got = hf_hub_download(task.repo_id, task.hub_path, local_dir=staging, token=token,
                              etag_timeout=CONNECT_TIMEOUT)
    except Exception as err:  # huggingface_hub raises many types (HTTP, gated, offline...); all are reported
        raise DownloadError(_hub_error_message(task, err)) from None
    task.dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, task.dest)
    return task.dest


def _hub_error_message(task: Task, err: Exception) -> str:
    name = err.__class__.__name__
    hint = ""
    if "Gated" in name or "401" in str(err) or "403" in str(err):
        hint = (f" The repository may be gated: accept its licence on {hub_endpoint()}/{task.repo_id} and log in "
                "with `huggingface-cli login` (or set HF_TOKEN).")
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (f"could not download {task.hub_path} from {task.repo_id} into {task.dest}: {name}: {first}.{hint} "
            f"Re-run the same command to resume, or place the file there by hand.")


def fetch_url(task: Task, chunk: int = 1 << 20, progress: bool = True) -> Path:
    """Resumable HTTP(S) download into ``<dest>.part`` (Range request from its size), renamed when complete."""
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    part = task.dest.with_name(task.dest.name + ".part")
    task.dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(task.url, headers={"User-Agent": "emocast-download"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    total = None
    try:
        with urllib.request.urlopen(req, timeout=CONNECT_TIMEOUT) as r:
            resumed = r.status == 206
            if not resumed:
                have = 0  # no partial file, or the server ignored the range: start over
            length = r.headers.get("Content-Length")
            total = int(length) + have if length is not None else None
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=task.dest.name,
                    disable=not progress) as bar:
                while True:
                    block = r.read(chunk)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part file already holds the whole file
            os.replace(part, task.dest)
            return task.dest
        raise DownloadError(f"could not download {task.url} into {task.dest}: HTTP {err.code} {err.reason}. "
                            "Check the URL in emocast/registry.py or place the file there by hand.") from None
    except (OSError, ValueError) as err:  # URLError, timeouts, connection resets
        raise DownloadError(f"could not download {task.url} into {task.dest}: {err.__class__.__name__}: {err}. "
                            f"Re-run the same command to resume ({part.name} keeps what arrived), or place the "
                            "file there by hand.") from None
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"download of {task.url} stopped early ({part.stat().st_size} of {total} bytes); "
                            "re-run the same command to resume.")
    os.replace(part, task.dest)
    return task.dest


def finish_component(name: str, root=None) -> None:
    """Post-download steps: audio-separator metadata when only the ``.onnx`` is present."""
    if name == "audio_separator":
        folder = registry.COMPONENTS[name].path(root)
        if not _empty(folder / SEPARATOR_MODEL):
            write_separator_metadata(folder)


def download(names: Sequence[str], root=None, *, token=None, log: Callable[[str], None] = print,
             progress: bool = True) -> None:
    """Fetch every missing file of ``names``. Raises :class:`DownloadError` with the report when anything fails.

    Stops before fetching anything when the network is unreachable or ``HF_HUB_OFFLINE`` is set.
    """
    names = list(names)
    for n in names:  # metadata of an already present separator model needs no network
        finish_component(n, root)
    tasks, manual = plan(names, root)
    if tasks:
        _require_network(tasks, names, root)
    failures: list[str] = []
    for task in tasks:
        log(f"[download] {task.component}: {task.dest.name} <- {task.source}")
        try:
            fetch_hub_file(task, root, token) if task.repo_id else fetch_url(task, progress=progress)
        except DownloadError as err:
            if registry.COMPONENTS[task.component].optional:
                log(f"[download] optional {task.component} skipped: {err}")
                continue
            failures.append(str(err))
    for n in names:
        finish_component(n, root)
    staging = registry.models_root(root) / STAGING
    if staging.is_dir() and not failures:
        shutil.rmtree(staging, ignore_errors=True)
    lines, bad = check(names, root)
    bad += [m for m in manual if m not in bad]
    if failures or bad:
        msg = "\n".join(failures + ["", "status after download:"] + ["  " + l for l in lines])
        raise DownloadError(msg.strip())


def _require_network(tasks: Sequence[Task], names, root) -> None:
    reason = None
    if any(t.repo_id for t in tasks) and hub_offline():
        reason = "HF_HUB_OFFLINE is set, so nothing can be fetched from the Hugging Face Hub"
    else:
        hosts = {hub_endpoint() if t.repo_id else t.url for t in tasks}
        seen = set()
        for url in sorted(hosts):
            host = urllib.parse.urlsplit(url).hostname
            if host in seen:
                continue
            seen.add(host)
            reason = probe(url)
            if reason:
                break
    if reason:
        lines, _ = check(names, root)
        raise DownloadError(
            f"no network: {reason}. Nothing was downloaded.\n"
            "Run this command on a machine with internet access (then copy pretrained_models/ here), or put the "
            "files in place by hand; HF_ENDPOINT selects a Hugging Face mirror.\n"
            + "\n".join("  " + l for l in lines))


# ---------------------------------------------------------------------------------------------------- separator
SEPARATOR_MODEL = "Kim_Vocal_2.onnx"
# MDX-Net parameters of Kim_Vocal_2 as listed for it in UVR's mdx_model_data (what audio-separator looks up by
# hash): the network sees 3072 frequency bins x 2**8 frames of an STFT with n_fft 7680, output scaled by 1.009.
KIM_VOCAL_2_PARAMS = {"compensate": 1.009, "mdx_dim_f_set": 3072, "mdx_dim_t_set": 8,
                      "mdx_n_fft_scale_set": 7680, "primary_stem": "Vocals"}
_DOWNLOAD_LISTS = ("demucs_download_list", "vr_download_list", "mdx_download_list", "mdx_download_vip_list",
                   "mdx23c_download_list", "mdx23c_download_vip_list", "roformer_download_list")


def separator_model_hash(path) -> str:
    """The model hash audio-separator uses: MD5 of the last 10,240,000 bytes (the whole file when smaller)."""
    n = 10000 * 1024
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size >= n:
            f.seek(size - n)
        return hashlib.md5(f.read()).hexdigest()


def write_separator_metadata(folder, model: str = SEPARATOR_MODEL, params: dict | None = None,
                             overwrite: bool = False) -> list[Path]:
    """Write the JSON files audio-separator reads before loading ``model`` offline; returns the files written.

    * ``download_checks.json``: UVR's download lists, with ``model`` under ``mdx_download_list``;
    * ``mdx_model_data.json``: ``{hash(model): params}`` (default :data:`KIM_VOCAL_2_PARAMS`, with
      ``mdx_dim_f_set``/``mdx_dim_t_set`` taken from the ONNX input shape when ``onnx`` is installed, so stub
      models work too); an existing file keeps its other entries;
    * ``vr_model_data.json``: ``{}``.
    Existing files are kept unless ``overwrite`` (the hub versions hold the full UVR tables).
    """
    folder = Path(folder)
    onnx_path = folder / model
    if _empty(onnx_path):
        raise MissingModelError(registry.missing_report(["audio_separator"], folder.parent), ["audio_separator"])
    params = dict(params or _params_from_onnx(onnx_path))
    written = []

    checks = folder / "download_checks.json"
    if overwrite or _empty(checks):
        lists = {k: {} for k in _DOWNLOAD_LISTS}
        lists["mdx_download_list"] = {f"MDX-Net Model: {Path(model).stem.replace('_', ' ')}": model}
        _write_json(checks, lists)
        written.append(checks)

    mdx = folder / "mdx_model_data.json"
    key = separator_model_hash(onnx_path)
    table = {} if overwrite or _empty(mdx) else json.loads(mdx.read_text(encoding="utf-8"))
    if key not in table:
        table[key] = params
        _write_json(mdx, table)
        written.append(mdx)

    vr = folder / "vr_model_data.json"
    if overwrite or _empty(vr):
        _write_json(vr, {})
        written.append(vr)
    return written


def _params_from_onnx(path: Path) -> dict:
    params = dict(KIM_VOCAL_2_PARAMS)
    try:
        import onnx
    except ImportError:
        return params
    try:
        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        dim_f, frames = dims[2].dim_value, dims[3].dim_value
    except Exception:  # not an ONNX file we understand: keep the published parameters
        return params
    if dim_f > 0:
        params["mdx_dim_f_set"] = int(dim_f)
    if frames > 0 and frames & (frames - 1) == 0:
        params["mdx_dim_t_set"] = int(frames).bit_length() - 1
    return params


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
