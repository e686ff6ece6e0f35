"""Builds llama.cpp's own llama-server (and llama-bench) from the sources vendored in the
llama-cpp-python release Hearth uses, into a cache directory outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import platformdirs

# Same choice as scripts/bootstrap.sh: native, minus the AMX kernels that crash on some VMs.
NATIVE_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


@dataclass(frozen=True)
class LlamaCppBuild:
    server: Path
    bench: Path
    commit: str
    version: str


def cache_dir() -> Path:
    return (
        Path(os.environ.get("HEARTH_BENCH_CACHE") or platformdirs.user_cache_dir("hearth"))
        / "bench"
    )


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ensure_llama_server() -> LlamaCppBuild:
    """The llama-server binary for the installed llama-cpp-python version, built once."""
    ver = version("llama-cpp-python")
    root = cache_dir()
    src = root / f"llama_cpp_python-{ver}"
    vendor = src / "vendor" / "llama.cpp"
    build = vendor / "build"
    server = build / "bin" / "llama-server"
    bench = build / "bin" / "llama-bench"
    if not (server.exists() and bench.exists()):
        root.mkdir(parents=True, exist_ok=True)
        if not vendor.is_dir():
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"llama-cpp-python=={ver}",
                    "-d",
                    str(root),
                ]
            )
            with tarfile.open(root / f"llama_cpp_python-{ver}.tar.gz") as tar:
                tar.extractall(root, filter="tar")
        _run(
            [
                "cmake",
                "-B",
                str(build),
                "-S",
                str(vendor),
                "-DCMAKE_BUILD_TYPE=Release",
                "-DGGML_NATIVE=ON",
                f"-DCMAKE_C_FLAGS={NATIVE_FLAGS}",
                f"-DCMAKE_CXX_FLAGS={NATIVE_FLAGS}",
                "-DLLAMA_OPENSSL=OFF",
                "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF",
                "-DLLAMA_BUILD_TOOLS=ON",
                "-DLLAMA_BUILD_SERVER=ON",
            ]
        )
        _run(
            [
                "cmake",
                "--build",
                str(build),
                "--target",
                "llama-server",
                "llama-bench",
                "-j",
                str(os.cpu_count() or 2),
            ]
        )
    commit = (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=vendor, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    return LlamaCppBuild(server=server, bench=bench, commit=commit, version=ver)


if __name__ == "__main__":
    print(ensure_llama_server())
