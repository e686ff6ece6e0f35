"""Per-model settings: `[[models]]` in the TOML config, and the original JSON shape."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from hearth.api.openai_wire import sampling
from hearth.api.protocol import SamplingRequest
from hearth.errors import ConfigError
from hearth.pipeline.plan import with_system_prompt
from hearth.pipeline.prepare import resolve_sampling
from hearth.settings import load_settings


def test_models_tables_in_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        """
port = 9000
keep_alive = "10m"

[[models]]
id = "Chat"
path = "weights/chat.gguf"
aliases = ["assistant"]
ctx_size = 2048
parallel = 2
gpu_layers = 0
chat_template = "{{ messages[0].content }}"
keep_alive = -1
system_prompt = "Be brief."
sampling = { temperature = 0.2, top_k = 20 }
"""
    )
    s = load_settings({"config": cfg}, environ={})
    assert s.port == 9000
    assert s.keep_alive_seconds == 600
    (m,) = s.models
    assert m.id == "chat"
    assert m.path == tmp_path / "weights" / "chat.gguf"  # relative to the config file
    assert (m.aliases, m.ctx_size, m.parallel, m.gpu_layers) == (["assistant"], 2048, 2, 0)
    assert m.keep_alive_seconds == math.inf
    assert m.sampling.as_dict() == {"temperature": 0.2, "top_k": 20}


def test_json_shape_of_the_original_design(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "id": "qwen",
                        "path": "/opt/models/qwen.gguf",
                        "context_window": 8192,
                        "max_output_tokens": 1024,
                    }
                ]
            }
        )
    )
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[models]]\nid = "from-toml"\n')
    s = load_settings({"config": cfg}, environ={"HEARTH_MODELS_CONFIG": str(models)})
    assert [m.id for m in s.models] == ["from-toml", "qwen"]
    qwen = s.models[1]
    assert (qwen.ctx_size, qwen.max_output_tokens) == (8192, 1024)
    assert qwen.path == Path("/opt/models/qwen.gguf")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('path = "x.gguf"\nspeed = 3', "speed"),
        ('id = "../evil"', "not a valid model id"),
        ('id = "a"\nkeep_alive = "soon"', "keep_alive"),
        ('id = "a"\nsampling = { temperature = 9 }', "temperature"),
        ('aliases = ["x"]', "needs an id, a path"),
        ('id = "a"\nchat_template = "x"\nchat_template_file = "t.jinja"', "not both"),
    ],
)
def test_bad_entries_are_config_errors(tmp_path: Path, entry: str, problem: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[[models]]\n{entry}\n")
    with pytest.raises(ConfigError, match=problem):
        load_settings({"config": cfg}, environ={})


def test_bad_models_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.touch()
    bad = tmp_path / "m.json"
    bad.write_text('{"models": "no"}')
    with pytest.raises(ConfigError, match="must be a list"):
        load_settings({"config": cfg, "models_config": bad}, environ={})
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"config": cfg, "models_config": bad}, environ={})


def test_lifecycle_settings_are_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.touch()
    s = load_settings({"config": cfg, "max_memory": "512MiB"}, environ={})
    assert s.memory_budget == 512 * 2**20
    assert load_settings({"config": cfg, "max_memory": "off"}, environ={}).memory_budget is None
    for flags in ({"max_memory": "lots"}, {"keep_alive": "later"}, {"max_loaded_models": 0}):
        with pytest.raises(ConfigError):
            load_settings({"config": cfg, **flags}, environ={})


def test_sampling_precedence_request_config_gguf_server() -> None:
    request = SamplingRequest.model_validate({"top_p": 0.5})
    params = resolve_sampling(
        sampling(request),
        {"temperature": 0.6, "top_k": 10, "min_p": 0.1},  # the GGUF's recommendation
        100,
        configured={"temperature": 0.1, "top_p": 0.9},
    )
    assert params.top_p == 0.5  # request
    assert params.temperature == 0.1  # configured for the model
    assert params.top_k == 10  # GGUF
    assert params.repeat_last_n == 64  # server default


def test_default_system_prompt_only_when_the_request_has_none() -> None:
    user = [{"role": "user", "content": "hi"}]
    assert with_system_prompt(user, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        *user,
    ]
    own = [{"role": "system", "content": "Mine."}, *user]
    assert with_system_prompt(own, "Be brief.") == own
    assert with_system_prompt(user, None) == user


def test_engine_options_take_the_model_settings_over_the_servers(tmp_path: Path) -> None:
    from hearth.models.config import ModelConfig
    from hearth.models.registry import ModelEntry
    from hearth.runtime import engine_options

    cfg = tmp_path / "c.toml"
    cfg.touch()
    settings = load_settings({"config": cfg, "ctx_size": 1024, "parallel": 4}, environ={})
    entry = ModelEntry(id="m", path=tmp_path / "m.gguf", size_bytes=0, created=0, header=None,
                       error=None)  # fmt: skip
    plain = engine_options(settings, entry)
    assert (plain.ctx_size, plain.parallel, plain.gpu_layers) == (1024, 4, 0)
    assert plain.max_output_tokens is None
    configured = ModelConfig(id="m", ctx_size=256, parallel=2, gpu_layers=-1, max_output_tokens=9)
    options = engine_options(settings, dataclasses.replace(entry, config=configured))
    assert (options.ctx_size, options.parallel, options.gpu_layers) == (256, 2, -1)
    assert options.max_output_tokens == 9
    assert options.threads == settings.threads and options.cache_type_k == settings.cache_type_k
