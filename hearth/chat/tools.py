"""Tool calling across model families: which output format a chat template implies, how tools
reach a template that has no tool support, and the grammar of a valid call.

Formats (the parser for each lives in tool_parser.py):
  hermes   <tool_call>{"name": "f", "arguments": {...}}</tool_call>    Hermes, Qwen 2.5/3
  llama3   {"name": "f", "parameters": {...}}, maybe after <|python_tag|>  Llama 3.1-3.3
  mistral  [TOOL_CALLS][{"name": "f", "arguments": {...}}]  or  [TOOL_CALLS]f[ARGS]{...}
  generic  {"name": "f", "arguments": {...}}, or an array of them, as the whole reply
A template that never mentions `tools` gets Hearth's own instructions in the system message and
the hermes format (the most common one; SmolLM2 was tuned on it)."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hearth.chat.tool_parser import (
    HERMES_END,
    HERMES_START,
    MISTRAL_ARGS,
    MISTRAL_CALLS,
    PYTHON_TAG,
    HermesParser,
    JsonStartParser,
    MistralParser,
    ToolParser,
)
from hearth.grammar.gbnf import RuleSet, literal, text_without
from hearth.grammar.json_schema import schema_to_grammar

FormatName = Literal["hermes", "llama3", "mistral", "generic"]
_USES_TOOLS = re.compile(r"\btools\b")


@dataclass(frozen=True, slots=True)
class ToolFormat:
    """How a model writes tool calls, and whether its template renders tools itself."""

    name: FormatName
    native: bool  # the template renders `tools`; else Hearth writes them into the system message
    mistral_args: bool = False  # [TOOL_CALLS]name[ARGS]{...} rather than a JSON array

    @property
    def markers(self) -> tuple[str, ...]:
        """Text markers of the format; control tokens among them must be written as text."""
        return {
            "hermes": (HERMES_START, HERMES_END),
            "llama3": (PYTHON_TAG,),
            "mistral": (MISTRAL_CALLS, MISTRAL_ARGS),
            "generic": (),
        }[self.name]

    @property
    def trigger(self) -> str | None:
        """The marker that opens a call anywhere in a reply (None: calls are whole replies)."""
        return {"hermes": HERMES_START, "mistral": MISTRAL_CALLS}.get(self.name)

    def parser(self) -> ToolParser:
        """A fresh streaming parser for one choice."""
        new_id = mistral_call_id if self.name == "mistral" else openai_call_id
        if self.name == "hermes":
            return HermesParser(new_id)
        if self.name == "mistral":
            return MistralParser(new_id)
        return JsonStartParser(new_id)


def detect_tool_format(template_source: str, *, is_fallback: bool = False) -> ToolFormat:
    """The tool-call format a chat template implies."""
    if is_fallback or not _USES_TOOLS.search(template_source):
        return ToolFormat("hermes", native=False)
    if HERMES_START in template_source:
        return ToolFormat("hermes", native=True)
    if MISTRAL_CALLS in template_source:
        return ToolFormat("mistral", native=True, mistral_args=MISTRAL_ARGS in template_source)
    if PYTHON_TAG in template_source or (
        '"parameters"' in template_source and "<|start_header_id|>" in template_source
    ):
        return ToolFormat("llama3", native=True)
    return ToolFormat("generic", native=True)


def openai_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def mistral_call_id() -> str:
    # Mistral's templates insist on nine letters and digits.
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


# -- templates without tool support -----------------------------------------------------------

TOOLS_PROMPT = """\
You can call functions to answer the user. Each function is described by a JSON Schema of \
its arguments, inside <tools></tools>:
<tools>
{tools}
</tools>
{rule} To call a function, reply with one line of JSON inside <tool_call></tool_call> tags, \
one block per call:
<tool_call>
{{"name": "function name", "arguments": {{"argument": "value"}}}}
</tool_call>
The results come back inside <tool_response></tool_response> tags."""


def tools_prompt(tools: list[dict[str, Any]], required: bool) -> str:
    """Instructions that describe the tools to a model whose template cannot."""
    rule = (
        "You must call at least one function."
        if required
        else "If a function helps, call it; otherwise answer directly."
    )
    listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return TOOLS_PROMPT.format(tools=listed, rule=rule)


def with_tools_prompt(messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """Messages with the tools prompt added to (or as) the system message."""
    if messages and messages[0]["role"] in ("system", "developer"):
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{prompt}".strip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def inline_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls and results as plain text in the hermes format, for templates that only know
    user and assistant turns. Consecutive results merge into one user turn, which keeps
    templates that insist on alternating roles (Gemma) happy."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            calls = "".join(  # back to back, as the grammar has the model write them
                f"{HERMES_START}\n{json.dumps(_call_object(c), ensure_ascii=False)}\n{HERMES_END}"
                for c in template_tool_calls(msg["tool_calls"])
            )
            text = f"{msg.get('content') or ''}\n{calls}".strip()
            out.append({"role": "assistant", "content": text})
        elif msg["role"] == "tool":
            block = f"<tool_response>\n{msg.get('content') or ''}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        else:
            out.append(msg)
    return [{k: v for k, v in m.items() if k != "_tool_results"} for m in out]


def _call_object(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"name": fn.get("name"), "arguments": fn.get("arguments")}


def template_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant tool calls as Hugging Face templates expect them: arguments as an object."""
    out = []
    for call in calls:
        call = dict(call)
        fn = dict(call.get("function") or {})
        args = fn.get("arguments")
        if isinstance(args, str):
            # Not JSON (or nested past the parser's recursion limit): the template gets the
            # string as sent.
            with contextlib.suppress(json.JSONDecodeError, RecursionError):
                fn["arguments"] = json.loads(args)
        call["function"] = fn
        out.append(call)
    return out


# -- grammar ------------------------------------------------------------------------------------


def call_grammar(
    rules: RuleSet,
    fmt: ToolFormat,
    tools: list[dict[str, Any]],
    *,
    parallel: bool,
    on_schema: Callable[[int, Any], str],
) -> str:
    """A rule matching one or more (parallel) calls of these tools in the format.

    on_schema(i, parameters) returns the rule for tool i's arguments (the caller decides what
    an unsupported schema means)."""
    objects = []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        args = on_schema(i, fn.get("parameters"))
        if fmt.name == "mistral" and fmt.mistral_args:
            objects.append(f"{literal(fn['name'] + MISTRAL_ARGS)} {args}")
            continue
        key = "parameters" if fmt.name == "llama3" else "arguments"
        head = json.dumps({"name": fn["name"], key: 0})[:-2]  # '{"name": "f", "arguments": '
        objects.append(f'{literal(head)} {args} "}}"')
    one = rules.add("tool-call", " | ".join(f"( {o} )" for o in objects))
    if fmt.name == "hermes":
        block = rules.add(
            "tool-block", f"{literal(HERMES_START + chr(10))} {one} {literal(chr(10) + HERMES_END)}"
        )
        # Hearth's own prompt format puts nothing between blocks: a newline after a block would
        # commit a small model to yet another call, and it repeats calls until max_tokens.
        sep = '"\\n" ' if fmt.native else ""
        return rules.add("tool-calls", f"{block} ( {sep}{block} )*" if parallel else block)
    if fmt.name == "mistral" and fmt.mistral_args:
        block = rules.add("tool-block", f"{literal(MISTRAL_CALLS)} {one}")
        return rules.add("tool-calls", f"{block}+" if parallel else block)
    if fmt.name == "mistral":
        many = f'( ", " {one} )*' if parallel else ""
        return rules.add("tool-calls", f'{literal(MISTRAL_CALLS + "[")} {one} {many} "]"')
    if fmt.name == "llama3":
        return rules.add("tool-calls", f'{one} ( "; " {one} )*' if parallel else one)
    if parallel:
        return rules.add("tool-calls", f'( {one} | "[" {one} ( ", " {one} )* "]" )')
    return one


def free_text_then_calls(rules: RuleSet, fmt: ToolFormat, calls: str) -> str | None:
    """For tool_choice auto: any reply, but once the call marker appears a valid call must
    follow. None for formats whose calls are whole replies (they are parsed, not constrained)."""
    if fmt.trigger is None:
        return None
    text = text_without(rules, fmt.trigger, "reply")
    return rules.add("reply-or-calls", f"{text} {calls}?")


def argument_rule(rules: RuleSet, schema: Any, *, param: str, hint: str) -> str:
    """The rule for a tool's arguments: its parameters schema, or any object when absent."""
    if schema is None:
        return rules.json("json-object")
    return schema_to_grammar(rules, schema, param=param, hint=hint)
