"""Reasoning ("thinking") blocks: which markers a model family uses, and a streaming parser that
moves the block at the start of the output into reasoning, the rest into content.

A block counts only at the start of the output (after whitespace), as the families emit it; a
prompt that already opened the block (DeepSeek-R1 and others end the generation prompt with
`<think>`) starts the parser inside it. Text cut before the end marker stays reasoning.

gpt-oss writes harmony messages instead, each on a channel; HarmonyParser reads those."""

from __future__ import annotations

from dataclasses import dataclass

from hearth.chat.pieces import Content, Piece, Reasoning, find_marker


@dataclass(frozen=True, slots=True)
class ReasoningMarkers:
    start: str
    end: str
    tokens: tuple[str, ...] = ()  # the format's other control tokens, to be written as text


THINK = ReasoningMarkers("<think>", "</think>")
# Harmony (gpt-oss, https://github.com/openai/harmony/blob/main/docs/format.md): the prompt
# ends with `<|start|>assistant`; the model writes `<|channel|>analysis<|message|>...<|end|>`,
# then `<|start|>assistant<|channel|>final<|message|>...` (`<|return|>` ends generation).
START, CHANNEL, MESSAGE, END = "<|start|>", "<|channel|>", "<|message|>", "<|end|>"
HARMONY = ReasoningMarkers(
    f"{CHANNEL}analysis{MESSAGE}", END, tokens=(START, CHANNEL, MESSAGE, "<|constrain|>")
)
HARMONY_NEXT = f"{START}assistant"  # what opens the message after the analysis
HARMONY_FINAL = f"{CHANNEL}final{MESSAGE}"  # the answer's header
# Families whose templates name other markers; the first whose end marker appears in the
# template wins, else <think> (DeepSeek-R1, Qwen3, QwQ, SmolLM3, GLM, Phi-4-reasoning...).
FAMILIES = (
    ReasoningMarkers("[THINK]", "[/THINK]"),  # Magistral
    ReasoningMarkers("<|START_THINKING|>", "<|END_THINKING|>"),  # Command A
    ReasoningMarkers("<seed:think>", "</seed:think>"),  # Seed-OSS
    ReasoningMarkers("◁think▷", "◁/think▷"),  # Kimi
)


def reasoning_markers(template_source: str) -> ReasoningMarkers:
    """The reasoning markers a chat template uses."""
    if CHANNEL in template_source:
        return HARMONY
    for family in FAMILIES:
        if family.end in template_source:
            return family
    return THINK


def mentions_reasoning(template_source: str, markers: ReasoningMarkers) -> bool:
    """Whether the template knows these markers (then the model is expected to think)."""
    return markers.end in template_source


def opens_reasoning(prompt: str, markers: ReasoningMarkers) -> bool:
    """Whether the rendered prompt ends inside an opened reasoning block."""
    return prompt.rstrip().endswith(markers.start)


class ReasoningParser:
    """Splits one choice's streamed text into Reasoning and Content pieces."""

    def __init__(self, markers: ReasoningMarkers, *, opened: bool = False):
        self.markers = markers
        # start: undecided (output so far may still become the start marker);
        # reasoning: inside the block; after: just past it (whitespace is dropped); content.
        self.state = "reasoning" if opened else "start"
        self.at_block_start = opened
        self.buf = ""

    def feed(self, text: str) -> list[Piece]:
        """Pieces now certain; text that may be part of a marker is held back."""
        self.buf += text
        out: list[Piece] = []
        while self.buf:
            if self.state == "start" and not self._start(out):
                break
            if self.state == "reasoning" and not self._reasoning(out):
                break
            if self.state == "after":
                stripped = self.buf.lstrip()
                if not stripped:
                    self.buf = ""
                    break
                self.buf, self.state = stripped, "content"
            if self.state == "content":
                out.append(Content(self.buf))
                self.buf = ""
        return out

    def finish(self) -> list[Piece]:
        """What was held back, at the end of the output (an unclosed block is reasoning)."""
        held, self.buf = self.buf, ""
        if self.state in ("start", "content") and held:
            return [Content(held)]
        if self.state == "reasoning" and held.strip():
            return [Reasoning(held.rstrip())]
        return []

    def _start(self, out: list[Piece]) -> bool:
        stripped = self.buf.lstrip()
        start = self.markers.start
        if stripped.startswith(start):
            self.buf = stripped[len(start) :]
            self.state = "reasoning"
            self.at_block_start = True
            return True
        if start.startswith(stripped):
            return False  # all whitespace, or the marker still arriving
        self.state = "content"
        return True

    def _reasoning(self, out: list[Piece]) -> bool:
        if self.at_block_start:
            self.buf = self.buf.lstrip()
            if not self.buf:
                return False
            self.at_block_start = False
        before, rest, found = find_marker(self.buf, self.markers.end)
        if found:
            if before.rstrip():
                out.append(Reasoning(before.rstrip()))
            self.buf, self.state = rest, "after"
            return True
        # Trailing whitespace waits too: dropped if the block ends right after it.
        text = before.rstrip()
        if text:
            out.append(Reasoning(text))
        self.buf = before[len(text) :] + rest
        return False


class HarmonyParser:
    """Splits harmony messages into pieces: the analysis channel is reasoning, final (and
    commentary preambles) content. A message to a tool (`to=` in its header) stays content as
    written, header included: harmony tool calls are not extracted. Output that does not start
    with a channel is all content."""

    def __init__(self, *, opened: bool = False):
        # first: the output's start; header: up to <|message|>; body: up to <|end|>;
        # between: after <|end|>, before the next <|start|>; plain: not harmony at all.
        self.state = "body" if opened else "first"
        self.kind: type[Content] | type[Reasoning] = Reasoning if opened else Content
        self.written: set[type[Content] | type[Reasoning]] = set()
        self.lead = ""  # what came before the header (<|start|>, after a first message)
        self.buf = ""

    def feed(self, text: str) -> list[Piece]:
        """Pieces now certain; a header, or text that may be part of a marker, waits."""
        self.buf += text
        out: list[Piece] = []
        while self.buf:
            if self.state in ("first", "between"):
                marker = CHANNEL if self.state == "first" else START
                stripped = self.buf.lstrip()
                if marker.startswith(stripped):
                    break  # all whitespace, or the marker still arriving
                if not stripped.startswith(marker):
                    self.state = "plain"
                elif self.state == "first":
                    self.buf, self.lead, self.state = stripped, "", "header"
                else:
                    self.buf, self.lead, self.state = stripped[len(START) :], START, "header"
            if self.state == "plain":
                out.append(Content(self.buf))
                self.buf = ""
            if self.state == "header":
                header, found, rest = self.buf.partition(MESSAGE)
                if not found:
                    break
                self.buf, self.state = rest, "body"
                out += self._open(header)
            if self.state == "body":
                before, rest, ended = find_marker(self.buf, END)
                if before:
                    out.append(self.kind(before))
                    self.written.add(self.kind)
                self.buf = rest
                if not ended:
                    break
                self.state = "between"
        return out

    def finish(self) -> list[Piece]:
        """What was held back; a header cut short is markup and goes."""
        held, self.buf = self.buf, ""
        if held and self.state == "body":
            return [self.kind(held)]
        if held and self.state in ("first", "plain"):
            return [Content(held)]
        return []

    def _open(self, header: str) -> list[Piece]:
        channel = header.partition(CHANNEL)[2].split("<|")[0].split(" ")[0]
        if "to=" in header:
            self.kind = Content
            return [Content(f"{self.lead}{header}{MESSAGE}")]
        self.kind = Reasoning if channel == "analysis" else Content
        # A second message of the same kind starts on a new paragraph.
        return [self.kind("\n\n")] if self.kind in self.written else []
