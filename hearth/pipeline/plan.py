"""From a conversation to what the engine and the output parser need: the prompt (messages and
tools through the model's template), the grammar that constrains sampling, and how to read the
output (reasoning markers, tool-call format)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hearth.chat.output import OutputParser
from hearth.chat.reasoning import (
    HARMONY,
    HARMONY_FINAL,
    HARMONY_NEXT,
    HarmonyParser,
    ReasoningMarkers,
    ReasoningParser,
    mentions_reasoning,
    opens_reasoning,
    reasoning_markers,
)
from hearth.chat.template import ChatTemplate
from hearth.chat.tools import (
    ToolFormat,
    argument_rule,
    call_grammar,
    detect_tool_format,
    free_text_then_calls,
    inline_tool_messages,
    template_tool_calls,
    tools_prompt,
    with_tools_prompt,
)
from hearth.errors import InvalidRequestError
from hearth.grammar.gbnf import RuleSet, gbnf_problem, literal, text_until
from hearth.grammar.json_schema import schema_to_grammar
from hearth.pipeline.request import ConversationRequest, OutputFormat, ReasoningFormat, Tool

log = logging.getLogger("hearth.api")

# Template variables a request may not override through chat_template_kwargs.
RESERVED_TEMPLATE_VARS = {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"}
# The functions templates call (ours and Jinja's): a kwarg of that name would shadow them.
RESERVED_TEMPLATE_VARS |= {"raise_exception", "strftime_now", "range", "namespace", "dict"}


@dataclass(slots=True)
class ChatPlan:
    """A chat request made concrete for one model."""

    prompt: str
    grammar: str | None = None
    markers: list[str] = field(default_factory=list)  # control tokens to write out as text
    tool_format: ToolFormat | None = None  # None: tool calls are not extracted
    parallel: bool = True
    reasoning: ReasoningMarkers | None = None  # None: raw output, nothing split off
    reasoning_opened: bool = False
    raw_prefix: str = ""

    def parser(self) -> OutputParser:
        """A fresh output parser for one choice."""
        reasoning: ReasoningParser | HarmonyParser | None = None
        if self.reasoning == HARMONY:
            reasoning = HarmonyParser(opened=self.reasoning_opened)
        elif self.reasoning:
            reasoning = ReasoningParser(self.reasoning, opened=self.reasoning_opened)
        return OutputParser(
            reasoning,
            self.tool_format.parser() if self.tool_format else None,
            parallel=self.parallel,
            prefix=self.raw_prefix,
        )


def with_system_prompt(
    messages: list[dict[str, Any]], system_prompt: str | None
) -> list[dict[str, Any]]:
    """The model's default system prompt goes first when the request brings none."""
    if system_prompt is None or any(m.get("role") in ("system", "developer") for m in messages):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def checked_grammar(grammar: str) -> str:
    """A user's GBNF grammar, refused with a 400 that explains a first problem found."""
    problem = gbnf_problem(grammar)
    if problem:
        raise InvalidRequestError(f"the grammar was refused: {problem}", param="grammar")
    return grammar


def format_rule(rules: RuleSet, fmt: OutputFormat | None) -> str | None:
    """The rule the reply must match for this output format (None: free text)."""
    if fmt is None:
        return None
    if fmt.kind == "json_object" or fmt.schema is None:
        return rules.json("json-object" if fmt.kind == "json_object" else "json-value")
    return schema_to_grammar(rules, fmt.schema, param=fmt.schema_param)


def output_grammar(fmt: OutputFormat | None, grammar: str | None) -> str | None:
    """The grammar text for a request's output format or grammar field (not both)."""
    if grammar is not None:
        if fmt is not None:
            raise InvalidRequestError(f"give {fmt.param} or grammar, not both", param=fmt.param)
        return checked_grammar(grammar)
    rules = RuleSet()
    root = format_rule(rules, fmt)
    return rules.render(root) if root else None


def _tool_choice(request: ConversationRequest) -> tuple[str, str | None]:
    """("none" | "auto" | "required", the named function or None)."""
    names = [t.name for t in request.tools]
    if len(set(names)) != len(names):
        raise InvalidRequestError("tool function names must be unique", param="tools")
    if request.tool_name is not None:
        if request.tool_name not in names:
            raise InvalidRequestError(
                f"tool_choice names function {request.tool_name!r}, which is not in tools",
                param="tool_choice",
            )
        return "required", request.tool_name
    if request.tool_choice == "required" and not names:
        raise InvalidRequestError("tool_choice 'required' needs tools", param="tool_choice")
    if not names:
        return "none", None
    return request.tool_choice or "auto", None


def build_plan(
    request: ConversationRequest,
    template: ChatTemplate,
    default_reasoning: ReasoningFormat,
    *,
    system_prompt: str | None = None,
) -> ChatPlan:
    """Render the prompt and decide grammar and output parsing for this request and model."""
    mode, named = _tool_choice(request)
    tools = [t.for_template() for t in request.tools]
    fmt = detect_tool_format(template.source, is_fallback=template.is_fallback)
    messages = with_system_prompt([m.for_template() for m in request.messages], system_prompt)
    if fmt.native:
        for msg in messages:
            if msg.get("tool_calls"):
                msg["tool_calls"] = template_tool_calls(msg["tool_calls"])
    else:
        messages = inline_tool_messages(messages)
        if mode != "none":
            messages = with_tools_prompt(messages, tools_prompt(tools, mode == "required"))
    kwargs = dict(request.template_kwargs)
    clash = RESERVED_TEMPLATE_VARS & set(kwargs)
    if clash:
        raise InvalidRequestError(
            f"chat_template_kwargs may not set {', '.join(sorted(clash))}",
            param="chat_template_kwargs",
        )
    if request.reasoning_effort is not None:
        kwargs["reasoning_effort"] = request.reasoning_effort
    prompt = template.render(
        messages, tools=tools if fmt.native and mode != "none" else None, **kwargs
    )

    markers = reasoning_markers(template.source)
    opened = opens_reasoning(prompt, markers)
    plan = ChatPlan(prompt=prompt, markers=[markers.start, markers.end, *markers.tokens])
    if (request.reasoning_format or default_reasoning) == "parsed":
        plan.reasoning, plan.reasoning_opened = markers, opened
    elif opened:
        plan.raw_prefix = markers.start  # raw output still shows where the block began
    if mode != "none":
        plan.tool_format = fmt
        plan.parallel = request.parallel_tool_calls is not False
        plan.markers += fmt.markers
    thinking = opened or mentions_reasoning(template.source, markers)
    plan.grammar = _grammar(request, fmt, mode, named, markers if thinking else None, opened)
    return plan


def _grammar(
    request: ConversationRequest,
    fmt: ToolFormat,
    mode: str,
    named: str | None,
    thinking: ReasoningMarkers | None,
    opened: bool,
) -> str | None:
    if request.grammar is not None:
        if mode != "none":
            raise InvalidRequestError(
                "grammar cannot be combined with tools unless tool_choice is 'none'",
                param="grammar",
            )
        return output_grammar(request.format, request.grammar)
    rules = RuleSet()
    content = format_rule(rules, request.format)
    root = content
    tools = request.tools
    if mode == "required":
        chosen = [t for t in tools if named is None or t.name == named]
        root = _calls(rules, fmt, chosen, request, strict=True)
    elif mode == "auto":
        calls = _calls(rules, fmt, tools, request, strict=False)
        if calls is not None and content is not None:
            root = rules.add("reply", f"{content} | {calls}")
        elif calls is not None:
            root = free_text_then_calls(rules, fmt, calls)
    if root is None:
        return None
    if thinking is not None:  # a thinking model may think first, grammar or not
        block = text_until(rules, thinking.end, "thought")
        # Harmony's answer is a message of its own, on the final channel.
        harmony = thinking == HARMONY
        lead = f"{block} {literal(HARMONY_NEXT) if harmony else rules.json('ws')}"
        if not opened:
            lead = f"( {literal(thinking.start)} {lead} )?"
        answer = f"{literal(HARMONY_FINAL)} " if harmony else ""
        root = f"{lead} {answer}{root}"
    return rules.render(root)


def _calls(
    rules: RuleSet,
    fmt: ToolFormat,
    chosen: list[Tool],
    request: ConversationRequest,
    *,
    strict: bool,
) -> str | None:
    """The calls rule. Strict (required, named): an unsupported schema is a 400. Otherwise
    (auto) the grammar only helps, so such a schema leaves calls unconstrained."""

    def on_schema(i: int, schema: Any) -> str:
        tool = chosen[i]
        return argument_rule(rules, schema, param=tool.param, hint=f"{tool.name}-args")

    # A named function is called once; otherwise parallel_tool_calls decides (default: yes).
    parallel = request.parallel_tool_calls is not False and len(chosen) == len(request.tools)
    definitions = [t.for_template() for t in chosen]
    if strict:
        return call_grammar(rules, fmt, definitions, parallel=parallel, on_schema=on_schema)
    saved = dict(rules.rules)
    try:
        return call_grammar(rules, fmt, definitions, parallel=parallel, on_schema=on_schema)
    except InvalidRequestError as exc:
        rules.rules = saved  # drop the half-built rules
        log.debug("tool calls left unconstrained: %s", exc.message)
        return None
