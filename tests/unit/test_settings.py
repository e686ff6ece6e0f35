from __future__ import annotations

import re
from pathlib import Path

import pytest

from hearth.errors import ConfigError
from hearth.settings import Settings, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"config": write_config(tmp_path, "")}, environ={})
    assert (s.host, s.port, s.parallel) == ("127.0.0.1", 11434, 4)
    assert s.effective_gpu_layers == 0


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "port = 1000\nparallel = 2\nthreads = 3\n")
    env = {"HEARTH_PORT": "2000", "HEARTH_PARALLEL": "5"}
    s = load_settings({"config": cfg, "port": 3000}, environ=env)
    assert s.port == 3000  # flag
    assert s.parallel == 5  # environment
    assert s.threads == 3  # file


def test_legacy_environment_names(tmp_path: Path) -> None:
    env = {
        "LLM_SERVER_PORT": "8080",
        "LLM_MODELS_DIR": str(tmp_path / "m"),
        "LLM_USE_GPU": "true",
        "HEARTH_CONFIG": str(write_config(tmp_path, "")),
    }
    s = load_settings({}, environ=env)
    assert s.port == 8080
    assert s.models_dir == tmp_path / "m"
    assert s.effective_gpu_layers == -1


def test_hearth_names_win_over_legacy_names(tmp_path: Path) -> None:
    env = {"LLM_SERVER_PORT": "8080", "HEARTH_PORT": "9090"}
    s = load_settings({"config": write_config(tmp_path, "")}, environ=env)
    assert s.port == 9090


def test_list_from_environment(tmp_path: Path) -> None:
    env = {"HEARTH_CORS_ORIGINS": "http://a.test, http://b.test"}
    s = load_settings({"config": write_config(tmp_path, "")}, environ=env)
    assert s.cors_origins == ["http://a.test", "http://b.test"]


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        load_settings({"config": write_config(tmp_path, ""), "port": 70000}, environ={})
    with pytest.raises(ConfigError, match="nonsense"):
        load_settings({"config": write_config(tmp_path, "nonsense = 1\n")}, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings({"config": tmp_path / "missing.toml"}, environ={})


def test_missing_default_config_file_is_fine(tmp_path: Path) -> None:
    s = load_settings({}, environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert s.port == 11434


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    assert documented == set(Settings.model_fields)
