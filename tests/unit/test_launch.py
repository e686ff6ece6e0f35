"""`hearth launch`'s configurations for each agent, and --write-user-config's merge and backup.
The agents themselves run against the real server in tests/e2e/test_agents_real.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from hearth.errors import ConfigError
from hearth.launch import AGENTS, Setup, Target, choose_model, target_for

TARGET = Target(url="http://127.0.0.1:5000", model="smol", context=8192, max_output=2048)
KEYED = Target(
    url="http://127.0.0.1:5000", model="smol", context=8192, max_output=2048, api_key="sk-secret"
)


def only_file(setup: Setup) -> tuple[Path, str]:
    assert len(setup.files) == 1
    return next(iter(setup.files.items()))


def test_opencode_gets_a_provider_with_the_models_limits(tmp_path: Path) -> None:
    setup = AGENTS["opencode"].setup(TARGET, tmp_path)
    path, text = only_file(setup)
    config = json.loads(text)
    provider = config["provider"]["hearth"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:5000/v1"}
    assert provider["models"]["smol"]["limit"] == {"context": 8192, "output": 2048}
    assert config["model"] == "hearth/smol"
    assert setup.env == {"OPENCODE_CONFIG": str(path)} and path.parent == tmp_path


def test_a_key_reaches_the_agent_by_variable_never_in_a_file(tmp_path: Path) -> None:
    for name, agent in AGENTS.items():
        setup = agent.setup(KEYED, tmp_path)
        _, text = only_file(setup)
        assert "sk-secret" not in text, name
        assert "sk-secret" in setup.env.values(), name
        shown = setup.show()
        assert "sk-secret" not in shown and "${HEARTH_API_KEY}" in shown, name
    opencode = json.loads(only_file(AGENTS["opencode"].setup(KEYED, tmp_path))[1])
    assert opencode["provider"]["hearth"]["options"]["apiKey"] == "{env:HEARTH_API_KEY}"
    codex = tomllib.loads(only_file(AGENTS["codex"].setup(KEYED, tmp_path))[1])
    assert codex["model_providers"]["hearth"]["env_key"] == "HEARTH_API_KEY"


def test_codex_gets_a_codex_home_on_the_responses_api(tmp_path: Path) -> None:
    setup = AGENTS["codex"].setup(TARGET, tmp_path)
    path, text = only_file(setup)
    config = tomllib.loads(text)
    assert config["model"] == "smol" and config["model_provider"] == "hearth"
    assert config["model_context_window"] == 8192
    assert config["model_providers"]["hearth"] == {
        "name": "Hearth",
        "base_url": "http://127.0.0.1:5000/v1",
        "wire_api": "responses",
    }
    assert setup.env == {"CODEX_HOME": str(tmp_path)} and path == tmp_path / "config.toml"


def test_claude_code_gets_its_variables_and_a_placeholder_token(tmp_path: Path) -> None:
    setup = AGENTS["claude"].setup(TARGET, tmp_path)
    path, text = only_file(setup)
    env = json.loads(text)["env"]
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:5000"
    assert env["ANTHROPIC_MODEL"] == env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "smol"
    assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "2048"
    assert setup.args == ["--settings", str(path)]
    # Claude Code needs some token; the user's own Anthropic key is never passed on.
    assert setup.env == {"ANTHROPIC_AUTH_TOKEN": "hearth", "ANTHROPIC_API_KEY": ""}


def test_the_users_config_keeps_what_it_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    mine = tmp_path / "xdg" / "opencode" / "opencode.json"
    mine.parent.mkdir(parents=True)
    mine.write_text(json.dumps({"theme": "dark", "provider": {"other": {"name": "X"}}}))
    path, text, args = AGENTS["opencode"].user_config(TARGET)
    merged = json.loads(text)
    assert path == mine and args == []
    assert merged["theme"] == "dark" and set(merged["provider"]) == {"other", "hearth"}
    assert merged["model"] == "hearth/smol"

    codex = tmp_path / "codex" / "config.toml"
    codex.parent.mkdir()
    codex.write_text('# mine\nmodel = "gpt-5"\n\n[model_providers.other]\nname = "O"\n')
    path, text, args = AGENTS["codex"].user_config(TARGET)
    assert text.startswith("# mine") and args == ["--profile", "hearth"]
    parsed = tomllib.loads(text)
    assert parsed["model"] == "gpt-5"  # the user's default stays; the profile selects Hearth
    assert set(parsed["model_providers"]) == {"other", "hearth"}
    assert parsed["profiles"]["hearth"]["model_provider"] == "hearth"

    path, text, _ = AGENTS["claude"].user_config(TARGET)
    assert path == tmp_path / "claude" / "settings.json"
    assert json.loads(text)["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:5000"


def test_a_user_config_that_is_not_plain_json_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    mine = tmp_path / "opencode" / "opencode.json"
    mine.parent.mkdir(parents=True)
    mine.write_text('{ // a comment\n "theme": "dark" }')
    with pytest.raises(ConfigError, match="not plain JSON"):
        AGENTS["opencode"].user_config(TARGET)


def listed(**hearth: object) -> dict[str, object]:
    return {"id": "m", "context_window": 8192, "max_output_tokens": 8192, "hearth": hearth}


def test_answers_leave_room_for_the_agents_prompt() -> None:
    def output(context: int, cap: int | None = None) -> int:
        model = {"id": "m", "context_window": context, "max_output_tokens": cap or context}
        return target_for("http://h", model, None).max_output

    # Half of what the agent's own ~8k-token prompt leaves, at least 256, at most 32000.
    assert output(8192) == 256
    assert output(32768) == 12288
    assert output(262144) == 32000
    assert output(32768, cap=512) == 512


def test_the_model_asked_for_else_a_loaded_one_else_the_first() -> None:
    models = [
        {**listed(status="available", aliases=["small"]), "id": "a"},
        {**listed(status="loaded", aliases=[]), "id": "b"},
        {**listed(status="invalid", aliases=[]), "id": "c"},
    ]
    assert choose_model(models, None)["id"] == "b"
    assert choose_model(models, "small")["id"] == "a"
    assert choose_model(models[:1], None)["id"] == "a"
    with pytest.raises(ConfigError, match=r"no model 'nope'.*it has: a, b"):
        choose_model(models, "nope")
    with pytest.raises(ConfigError, match="hearth starter"):
        choose_model(models[2:], None)
