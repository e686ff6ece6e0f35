"""Reasoning blocks on recorded token streams, written from the families' documentation: the
pieces each token brings, markers split across tokens included."""

from __future__ import annotations

import pytest

from hearth.chat.output import MessageParts
from hearth.chat.pieces import Content, Piece, Reasoning
from hearth.chat.reasoning import (
    HARMONY,
    THINK,
    HarmonyParser,
    ReasoningMarkers,
    ReasoningParser,
    mentions_reasoning,
    opens_reasoning,
    reasoning_markers,
)


def run(tokens: list[str], markers: ReasoningMarkers = THINK, opened: bool = False) -> MessageParts:
    parser = ReasoningParser(markers, opened=opened)
    parts = MessageParts()
    for token in tokens:
        parts.add(parser.feed(token))
    parts.add(parser.finish())
    return parts


def texts(parts: MessageParts) -> tuple[str, str]:
    return "".join(parts.reasoning), "".join(parts.content)


def test_deepseek_r1_block_then_answer() -> None:
    tokens = ["<think>", "\n", "Okay", ",", " 2", "+", "2", " is", " 4", ".", "\n", "</think>",
              "\n\n", "The", " answer", " is", " 4", "."]  # fmt: skip
    assert texts(run(tokens)) == ("Okay, 2+2 is 4.", "The answer is 4.")


def test_markers_split_across_tokens() -> None:
    tokens = ["<", "th", "ink", ">", "a", " b", "</", "thi", "nk", ">", "c"]
    assert texts(run(tokens)) == ("a b", "c")


def test_prompt_that_opened_the_block() -> None:
    # DeepSeek-R1's newer template ends the generation prompt with "<think>\n".
    assert opens_reasoning("<\uff5cAssistant\uff5c><think>\n", THINK)
    tokens = ["Let", " me", " add", ".", "\n", "</think>", "\n\n", "4"]
    assert texts(run(tokens, opened=True)) == ("Let me add.", "4")


def test_block_cut_by_max_tokens_is_reasoning() -> None:
    assert texts(run(["<think>", "\n", "Let", " me", " think", " about"])) == (
        "Let me think about",
        "",
    )
    assert texts(run(["Still", " thinking", " </th"], opened=True)) == ("Still thinking </th", "")


def test_no_block_is_all_content() -> None:
    # Qwen3 with enable_thinking=false: the template closed an empty block already.
    assert not opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n", THINK)
    assert texts(run(["Hello", " there"])) == ("", "Hello there")
    assert texts(run(["<", "b", ">bold</b>"])) == ("", "<b>bold</b>")
    assert texts(run(["  ", "\n"])) == ("", "  \n")


def test_a_think_tag_later_in_the_reply_is_content() -> None:
    assert texts(run(["Use ", "<think>", " tags"])) == ("", "Use <think> tags")


def test_stream_sends_reasoning_before_the_end_marker() -> None:
    parser = ReasoningParser(THINK)
    seen: list[Piece] = []
    for token in ["<think>", "step", " one", " and", " two"]:
        seen += parser.feed(token)
    assert [p.text for p in seen if isinstance(p, Reasoning)] == ["step", " one", " and", " two"]
    assert not any(isinstance(p, Content) for p in seen)


@pytest.mark.parametrize(
    ("template", "markers"),
    [
        ("{{ '[THINK]' }}...{{ '[/THINK]' }}", ReasoningMarkers("[THINK]", "[/THINK]")),
        (
            "<|START_THINKING|>x<|END_THINKING|>",
            ReasoningMarkers("<|START_THINKING|>", "<|END_THINKING|>"),
        ),
        ("<seed:think></seed:think>", ReasoningMarkers("<seed:think>", "</seed:think>")),
        ("{% if '</think>' in content %}", THINK),
        ("<|im_start|>", THINK),
    ],
)
def test_markers_from_templates(template: str, markers: ReasoningMarkers) -> None:
    assert reasoning_markers(template) == markers


def test_magistral_markers() -> None:
    markers = ReasoningMarkers("[THINK]", "[/THINK]")
    tokens = ["[THINK]", "Check", " units", ".", "[/THINK]", "42", " m"]
    assert texts(run(tokens, markers)) == ("Check units.", "42 m")
    assert mentions_reasoning("x [/THINK] y", markers)
    assert not mentions_reasoning("<|im_start|>", THINK)


# Harmony (gpt-oss): the example output of openai/harmony's docs/format.md, token by token as
# its StreamableParser example shows it (<|return|> ends generation and is not output text).
HARMONY_2_PLUS_2 = [
    "<|channel|>", "analysis", "<|message|>", "User", " asks", ":", ' "', "What", " is", " ",
    "2", " +", " ", "2", '?"', " Simple", " arithmetic", ".", " Provide", " answer", ".",
    "<|end|>", "<|start|>", "assistant", "<|channel|>", "final", "<|message|>", "2", " +", " ",
    "2", " =", " ", "4", ".",
]  # fmt: skip


def run_harmony(tokens: list[str], opened: bool = False) -> MessageParts:
    parser = HarmonyParser(opened=opened)
    parts = MessageParts()
    for token in tokens:
        parts.add(parser.feed(token))
    parts.add(parser.finish())
    return parts


def test_harmony_analysis_is_reasoning_and_final_is_content() -> None:
    want = ('User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.', "2 + 2 = 4.")
    assert texts(run_harmony(HARMONY_2_PLUS_2)) == want
    # The same text one character at a time: markers split anywhere.
    assert texts(run_harmony(list("".join(HARMONY_2_PLUS_2)))) == want


def test_harmony_streams_reasoning_before_the_message_ends() -> None:
    parser = HarmonyParser()
    seen: list[Piece] = []
    for token in HARMONY_2_PLUS_2[:8]:
        seen += parser.feed(token)
    assert "".join(p.text for p in seen if isinstance(p, Reasoning)) == 'User asks: "What'
    assert not any(isinstance(p, Content) for p in seen)


def test_harmony_preamble_is_content_and_a_tool_message_stays_as_written() -> None:
    # The format's preamble example: thinking, a preamble for the user, then a call.
    text = (
        "<|channel|>analysis<|message|>Plan the steps.<|end|>"
        "<|start|>assistant<|channel|>commentary<|message|>**Action plan**: write the file."
        "<|end|><|start|>assistant<|channel|>commentary to=functions.generate_file"
        '<|constrain|>json<|message|>{"path": "index.html"}'
    )
    reasoning, content = texts(run_harmony(list(text)))
    assert reasoning == "Plan the steps."
    assert content == (
        "**Action plan**: write the file.<|start|>assistant<|channel|>commentary "
        'to=functions.generate_file<|constrain|>json<|message|>{"path": "index.html"}'
    )


def test_harmony_cut_short_and_not_harmony() -> None:
    # max_tokens inside the analysis: reasoning; inside the next header: the header goes.
    assert texts(run_harmony(HARMONY_2_PLUS_2[:12])) == ('User asks: "What is 2 +', "")
    assert texts(run_harmony(HARMONY_2_PLUS_2[:25])) == (
        'User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.',
        "",
    )
    # A model that ignores the format: all content, nothing held back or lost.
    assert texts(run_harmony(["Hello", " <|", "there"])) == ("", "Hello <|there")
    assert texts(run_harmony(["  "])) == ("", "  ")
    # Two analysis messages in a row are two paragraphs of reasoning.
    two = "<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>analysis<|message|>B"
    assert texts(run_harmony([two])) == ("A\n\nB", "")


def test_harmony_markers_from_a_gpt_oss_template() -> None:
    source = (
        "{%- for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>"
        "{%- endfor %}<|start|>assistant<|channel|>final<|message|>"
    )
    assert reasoning_markers(source) == HARMONY
    assert mentions_reasoning(source, HARMONY)
    assert {"<|start|>", "<|channel|>", "<|message|>", "<|end|>"} <= {
        HARMONY.start,
        HARMONY.end,
        *HARMONY.tokens,
    }
