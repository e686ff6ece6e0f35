"""What a `hearth pull` name points to: a Hugging Face file (`owner/repo/file.gguf`), a
quantization in a repo (`owner/repo:Q4_K_M`, resolved through the hub's file list), or a URL.

huggingface_hub builds the URLs, lists the files and reads their metadata (it honours
HF_ENDPOINT and the user's token); the download itself is hearth.models.download's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from hearth.errors import DownloadError, HearthError, InvalidRequestError, RemoteNotFound
from hearth.models.paths import check_name
from hearth.models.validate import split_part_names

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REPO_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+ -]{0,199}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SPLIT_PATH = re.compile(r"(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf", re.IGNORECASE)
HUB_PREFIXES = ("hf.co/", "huggingface.co/")


@dataclass(frozen=True, slots=True)
class PullSpec:
    """A parsed pull name."""

    kind: Literal["url", "file", "quant"]
    repo: str = ""
    path: str = ""  # file path inside the repo
    tag: str = ""  # quantization, e.g. Q4_K_M
    url: str = ""
    revision: str = "main"


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file to download and where it goes in the models directory."""

    url: str
    name: str  # relative name in the models directory (checked)
    size: int | None = None
    sha256: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # for the hub only (auth)


def parse_spec(spec: str) -> PullSpec:
    """`owner/repo/file.gguf`, `owner/repo:Q4_K_M`, or an http(s) URL; else a 400."""
    text = spec.strip()
    if not text or "\x00" in text or any(c.isspace() for c in text):
        raise InvalidRequestError(f"invalid model name {spec!r}", param="model")
    if text.startswith(("http://", "https://")):
        return PullSpec("url", url=text)
    for prefix in HUB_PREFIXES:
        text = text.removeprefix(prefix)
    if ":" in text:
        repo, tag = text.rsplit(":", 1)
        if _REPO.fullmatch(repo) and _TAG.fullmatch(tag):
            return PullSpec("quant", repo=repo, tag=tag)
    parts = text.split("/")
    if len(parts) >= 3 and _REPO.fullmatch("/".join(parts[:2])):
        path = parts[2:]
        safe = all(_REPO_PATH.fullmatch(p) and p not in (".", "..") for p in path)
        if safe and path[-1].lower().endswith(".gguf"):
            return PullSpec("file", repo="/".join(parts[:2]), path="/".join(path))
    if _REPO.fullmatch(text):
        raise InvalidRequestError(
            f"{spec!r} names a repository: add a file (owner/repo/file.gguf) or a "
            "quantization (owner/repo:Q4_K_M)",
            param="model",
        )
    raise InvalidRequestError(
        f"invalid model name {spec!r}: use owner/repo/file.gguf, owner/repo:Q4_K_M or a URL",
        param="model",
    )


def resolve(
    spec: PullSpec, *, name: str | None = None, sha256: str | None = None, endpoint: str | None
) -> list[RemoteFile]:
    """The files to download for a spec (blocking: it asks the hub). `name` renames the
    download in the models directory; `sha256` is checked when the hub gives none."""
    if sha256 is not None and not _SHA256.fullmatch(sha256.lower()):
        raise InvalidRequestError("sha256 must be 64 hexadecimal digits", param="sha256")
    expected = sha256.lower() if sha256 else None
    if spec.kind == "url":
        return [_from_url(spec.url, name, expected)]
    with _hub_errors(spec):
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

        headers = build_hf_headers()
        if spec.kind == "quant":
            files = _quant_files(spec, endpoint, headers)
        else:
            files = _file_and_parts(spec, endpoint, headers)
    files = _renamed(files, name)
    if expected and len(files) == 1 and files[0].sha256 is None:
        files = [RemoteFile(files[0].url, files[0].name, files[0].size, expected, headers)]
    return files


def _from_url(url: str, name: str | None, sha256: str | None) -> RemoteFile:
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    chosen = last if name is None else name if name.lower().endswith(".gguf") else name + ".gguf"
    if not chosen.lower().endswith(".gguf"):
        raise InvalidRequestError(
            "the URL does not end in a .gguf file name; give the file a name", param="name"
        )
    return RemoteFile(url=url, name=check_name(chosen, param="name"), sha256=sha256)


def _renamed(files: list[RemoteFile], name: str | None) -> list[RemoteFile]:
    if name is None:
        return [RemoteFile(f.url, check_name(f.name), f.size, f.sha256, f.headers) for f in files]
    if len(files) == 1:
        chosen = name if name.lower().endswith(".gguf") else name + ".gguf"
        names = [chosen]
    else:
        names = split_part_names(name.removesuffix(".gguf"), len(files))
    return [
        RemoteFile(f.url, check_name(n, param="name"), f.size, f.sha256, f.headers)
        for f, n in zip(files, names, strict=True)
    ]


def _sha(value: str | None) -> str | None:
    value = (value or "").strip('"').lower()
    return value if _SHA256.fullmatch(value) else None  # a git sha1 etag is no sha256


def _file_and_parts(
    spec: PullSpec, endpoint: str | None, headers: dict[str, str]
) -> list[RemoteFile]:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    paths = [spec.path]
    split = split_of(spec.path)
    if split is not None and split[1] == 1:  # the first part brings the others along
        paths = split_part_names(split[0], split[2])
    out = []
    for path in paths:
        url = hf_hub_url(spec.repo, path, revision=spec.revision, endpoint=endpoint)
        meta = get_hf_file_metadata(url, endpoint=endpoint, headers=headers)
        out.append(RemoteFile(url, path.rsplit("/", 1)[-1], meta.size, _sha(meta.etag), headers))
    return out


def split_of(path: str) -> tuple[str, int, int] | None:
    """(folder/stem, part number, part count) when a repo path names a split model's part."""
    m = _SPLIT_PATH.fullmatch(path)
    if m is None or int(m["count"]) < 2:
        return None
    return m["stem"], int(m["no"]), int(m["count"])


def _quant_files(spec: PullSpec, endpoint: str | None, headers: dict[str, str]) -> list[RemoteFile]:
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, headers=headers)
    tree = api.list_repo_tree(spec.repo, recursive=True, revision=spec.revision)
    files = [f for f in tree if isinstance(f, RepoFile) and f.path.lower().endswith(".gguf")]
    files = [f for f in files if "mmproj" not in f.path.lower()]
    tag = re.compile(rf"(?<![A-Za-z0-9]){re.escape(spec.tag)}(?![A-Za-z0-9_])", re.IGNORECASE)
    groups: dict[str, list[Any]] = {}
    for f in sorted(files, key=lambda f: f.path):
        if tag.search(f.path.rsplit("/", 1)[-1]):
            split = split_of(f.path)
            key = f"{split[0]} ({split[2]} parts)" if split else f.path
            groups.setdefault(key, []).append(f)
    if not groups:
        quants = sorted({q for f in files for q in _QUANT.findall(f.path)})
        raise RemoteNotFound(
            f"no {spec.tag} GGUF in {spec.repo}"
            + (f"; it has {', '.join(quants)}" if quants else ""),
            param="model",
        )
    if len(groups) > 1:
        raise InvalidRequestError(
            f"{spec.tag} matches several models in {spec.repo}: {', '.join(sorted(groups))}; "
            "name the file (owner/repo/file.gguf)",
            param="model",
        )
    (chosen,) = groups.values()
    return [
        RemoteFile(
            url=hf_hub_url(spec.repo, f.path, revision=spec.revision, endpoint=endpoint),
            name=f.path.rsplit("/", 1)[-1],
            size=f.lfs.size if f.lfs else f.size,
            sha256=_sha(f.lfs.sha256) if f.lfs else None,
            headers=headers,
        )
        for f in chosen
    ]


_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d_[A-Z0-9_]+?|F16|BF16|F32)(?=[.-])", re.IGNORECASE)


@contextmanager
def _hub_errors(spec: PullSpec) -> Iterator[None]:
    """huggingface_hub's exceptions as Hearth errors, at this one boundary."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except HearthError:
        raise
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        what = spec.path or spec.tag
        raise RemoteNotFound(
            f"not found on the hub: {spec.repo} {what} ({type(exc).__name__})", param="model"
        ) from None
    except HfHubHTTPError as exc:
        raise DownloadError(f"the hub refused {spec.repo}: {exc}") from None
    except Exception as exc:  # network errors come from whichever HTTP client the hub uses
        raise DownloadError(f"cannot reach the hub for {spec.repo}: {exc}") from None
