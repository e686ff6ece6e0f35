"""The chat page in a real browser against the real server and starter model: a streamed
answer with its timings, Stop cancelling the generation on the server, HTML in messages
staying text, conversations kept in the store (reload, rename, delete, restart), errors shown,
and both screen sizes."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, start_server
from tests.ui.conftest import no_horizontal_scroll, playwright_api, shot

pytestmark = pytest.mark.e2e

Page = playwright_api.Page
expect = playwright_api.expect

XSS = '<img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script>'
ANSWER = ".msg.assistant"


def options(page: Page, *, max_tokens: int) -> None:
    page.locator(".chat-options summary").click()
    page.fill("#chat-max", str(max_tokens))


def ask(page: Page, text: str) -> None:
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def finished(page: Page) -> Any:
    """The last answer's timing line, once the answer has ended."""
    stats = page.locator(f"{ANSWER} .msg-stats").last
    expect(stats).to_be_visible(timeout=60_000)
    return stats


def conversations(server: RunningServer) -> list[dict[str, Any]]:
    data = httpx.get(f"{server.url}/v1/conversations?limit=50", timeout=10).json()["data"]
    return data  # type: ignore[no-any-return]


def test_streamed_answer_with_timings_survives_reload(
    ui_server: RunningServer, open_page: Any
) -> None:
    page, _ = open_page(ui_server)
    expect(page.locator("#chat-model")).to_have_value("smollm2-135m-instruct.q4_1")
    options(page, max_tokens=24)
    page.locator(".chat-options summary").click()  # folded again, for the screenshot
    # Every text the answer shows on its way: more than one means it streamed in.
    page.evaluate(
        """() => {
          window.__seen = new Set();
          new MutationObserver(() => {
            const md = document.querySelector('.msg.assistant .md');
            if (md && md.textContent) window.__seen.add(md.textContent);
            const status = document.querySelector('.msg.assistant .msg-status');
            if (status && status.textContent === 'Loading model…') window.__loading = true;
          }).observe(document.querySelector('.messages'),
                     {childList: true, subtree: true, characterData: true});
        }"""
    )
    ask(page, "Name three colours.")
    expect(page.locator(".msg.user")).to_have_text("Name three colours.")
    stats = finished(page)
    expect(stats).to_have_text(re.compile(r"^TTFT \d+ ms · [\d.]+ tokens/s · \d+ tokens$"))
    answer = page.locator(f"{ANSWER} .md").text_content() or ""
    assert answer.strip()
    assert page.evaluate("window.__seen.size") > 1, "the answer arrived in one piece"
    assert page.evaluate("window.__loading"), "no 'Loading model…' while the model loaded"
    title = page.locator(".conv-open[aria-current=true] .conv-title")
    expect(title).to_have_text("Name three colours.")
    shot(page, "chat-desktop")
    no_horizontal_scroll(page)

    page.reload()
    entry = page.locator(".convs li", has_text="Name three colours.")
    expect(entry).to_have_count(1)
    entry.locator(".conv-open").click()
    expect(page.locator(".msg.user")).to_have_text("Name three colours.")
    expect(page.locator(f"{ANSWER} .md")).to_have_text(answer)


def test_stop_ends_the_request_on_the_server(ui_server: RunningServer, open_page: Any) -> None:
    page, _ = open_page(ui_server)
    ids: list[str] = []
    page.on(
        "response",
        lambda r: (
            ids.append(r.headers["x-request-id"]) if r.url.endswith("/v1/responses") else None
        ),
    )
    options(page, max_tokens=2000)
    ask(page, "Tell me a very long story about a dragon and a lighthouse.")
    expect(page.locator(f"{ANSWER} .md")).not_to_be_empty(timeout=60_000)
    stopped_at = time.monotonic()
    page.locator("button", has_text="Stop").click()
    expect(page.locator(f"{ANSWER} .msg-note")).to_have_text("Stopped.")
    expect(page.locator("button", has_text="Stop")).to_be_disabled()
    assert len(ids) == 1

    row = None
    while row is None and time.monotonic() - stopped_at < 20:
        rows = httpx.get(
            f"{ui_server.url}/api/requests?route=/v1/responses&limit=20", timeout=10
        ).json()["data"]
        row = next((r for r in rows if r["request_id"] == ids[0]), None)
        if row is None:
            time.sleep(0.2)
    assert row is not None, "the request never ended"
    assert (row["error_type"], row["error_code"]) == ("cancelled", "client_disconnected")
    # 2000 tokens take the starter tens of seconds; the stop came right after the first.
    assert row["latency_ms"] < 15_000, row
    # Logged under its model with what it had made: a cut answer is still a request.
    assert row["model"] == STARTER_ID and row["prompt_tokens"] > 0, row
    assert 0 < row["completion_tokens"] < 2000, row
    model = httpx.get(f"{ui_server.url}/v1/models", timeout=10).json()["data"][0]
    assert model["hearth"]["active_requests"] == 0

    # Esc stops too.
    ask(page, "Now tell me another long story, about a fox.")
    expect(page.locator(f"{ANSWER} .md").last).not_to_be_empty(timeout=60_000)
    page.keyboard.press("Escape")
    expect(page.locator(f"{ANSWER} .msg-note").last).to_have_text("Stopped.")


def test_html_in_messages_stays_text(ui_server: RunningServer, open_page: Any) -> None:
    page, _ = open_page(ui_server)
    options(page, max_tokens=8)
    ask(page, f"Repeat this: {XSS}")
    finished(page)
    expect(page.locator(".msg.user")).to_have_text(f"Repeat this: {XSS}")
    page.reload()
    expect(page.locator(".msg.user")).to_have_text(f"Repeat this: {XSS}")  # from the store
    expect(page.locator(ANSWER)).to_have_count(1)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#page img, #page script").count() == 0

    # The renderer itself, on what a model might write.
    rendered = page.evaluate(
        """async () => {
          const { render } = await import('/ui/markdown.js');
          const div = document.createElement('div');
          div.append(render([
            '# Title', '**bold** and *it* and `<b>code</b>`', '',
            '[bad](javascript:window.__pwned=3) [data](data:text/html,x) [rel](/x)',
            '[good](https://example.com/a?b=1) <img src=x onerror="window.__pwned=4">',
            '- one', '- two', '', '> quoted', '',
            '```html', '<script>window.__pwned=5</script>', '```',
          ].join('\\n')));
          return {
            tags: [...div.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
            links: [...div.querySelectorAll('a')].map((a) => [a.href, a.rel]),
            code: div.querySelector('pre').textContent,
            text: div.textContent,
            copy: div.querySelectorAll('.code button').length,
          };
        }"""
    )
    assert rendered["links"] == [["https://example.com/a?b=1", "noopener noreferrer"]]
    assert {"h3", "strong", "em", "code", "ul", "li", "blockquote", "pre"} <= set(rendered["tags"])
    assert not {"img", "script", "b"} & set(rendered["tags"])
    assert rendered["code"] == "<script>window.__pwned=5</script>"
    assert "[bad](javascript:window.__pwned=3)" in rendered["text"]
    assert '<img src=x onerror="window.__pwned=4">' in rendered["text"]
    assert rendered["copy"] == 1
    assert page.evaluate("window.__pwned") is None


def test_rename_and_delete(ui_server: RunningServer, open_page: Any) -> None:
    created = httpx.post(
        f"{ui_server.url}/v1/conversations", json={"metadata": {"title": "Old title"}}, timeout=10
    ).json()
    page, _ = open_page(ui_server)
    page.get_by_role("button", name="Rename Old title").click()
    field = page.get_by_label("New title")
    field.fill("New title")
    field.press("Enter")
    expect(page.locator(".convs li", has_text="New title")).to_have_count(1)
    got = httpx.get(f"{ui_server.url}/v1/conversations/{created['id']}", timeout=10).json()
    assert got["metadata"]["title"] == "New title"

    page.get_by_role("button", name="Delete New title").click()
    dialog = page.locator("dialog.chat-confirm")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator(".convs li", has_text="New title")).to_have_count(1)
    page.get_by_role("button", name="Delete New title").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".convs li", has_text="New title")).to_have_count(0)
    gone = httpx.get(f"{ui_server.url}/v1/conversations/{created['id']}", timeout=10)
    assert gone.status_code == 404


def test_reasoning_and_tool_calls_render(ui_server: RunningServer, open_page: Any) -> None:
    items = [
        {"type": "message", "role": "user", "content": "What time is it?"},
        {
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "The user wants the time."}],
        },
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "clock",
            "name": "now",
            "arguments": '{"tz":"UTC"}',
            "output": "12:00",
            "status": "completed",
        },
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
        {"type": "message", "role": "assistant", "content": "It is **noon**."},
    ]
    created = httpx.post(
        f"{ui_server.url}/v1/conversations",
        json={"metadata": {"title": "tools"}, "items": items},
        timeout=10,
    ).json()
    page, _ = open_page(ui_server, f"/#/chat/{created['id']}")
    thinking = page.locator(f"{ANSWER} details.thinking")
    expect(thinking).to_have_count(1)
    assert thinking.evaluate("d => !d.open")  # a finished thought is folded away
    expect(thinking).to_contain_text("The user wants the time.")
    mcp, call = page.locator(f"{ANSWER} .tool").all()
    expect(mcp.locator("summary")).to_have_text("MCP call now on clock")
    expect(mcp.locator(".tool-args")).to_have_text('{\n  "tz": "UTC"\n}')
    expect(mcp.locator(".tool-result")).to_have_text("12:00")
    expect(call.locator("summary")).to_have_text("Tool call lookup")
    expect(call.locator(".tool-result")).to_have_text("found")
    expect(page.locator(f"{ANSWER} .md strong")).to_have_text("noon")


def test_invalid_model_shows_its_reason(ui_server: RunningServer, open_page: Any) -> None:
    (ui_server.log.parent / "models" / "broken.gguf").write_bytes(b"GGUFx")
    page, watch = open_page(ui_server)
    # The refused POST is the browser's one console line: what the test provokes.
    watch.allow = lambda e: "status of 422" in e
    page.select_option("#chat-model", "broken")
    expect(page.locator(".chat-bar .badge")).to_have_text("invalid")
    ask(page, "Hello?")
    alert = page.locator(f"{ANSWER} [role=alert]")
    expect(alert).to_contain_text("not usable")
    expect(alert).to_contain_text("truncated")
    (ui_server.log.parent / "models" / "broken.gguf").unlink()


def test_phone_layout(ui_server: RunningServer, open_page: Any) -> None:
    page, _ = open_page(ui_server, phone=True)
    page.type("#chat-input", "one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("two")
    expect(page.locator("#chat-input")).to_have_value("one\ntwo")  # a new line, not sent
    expect(page.locator(".msg.user")).to_have_count(0)
    side = page.locator("#chat-side")
    expect(side).to_be_hidden()
    toggle = page.get_by_role("button", name="Chats")
    toggle.click()
    expect(side).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    side.locator(".conv-open", has_text="Name three colours.").click()
    expect(side).to_be_hidden()  # opening one folds the list away
    expect(page.locator(f"{ANSWER} .md")).not_to_be_empty()
    no_horizontal_scroll(page)
    shot(page, "chat-phone")


def test_conversations_survive_a_restart(ui_server: RunningServer, open_page: Any) -> None:
    before = {c["id"] for c in conversations(ui_server)}
    assert before
    ui_server.stop()
    tmp = ui_server.log.parent  # the same data directory and models
    server = start_server(tmp, None, models_dir=tmp / "models")
    try:
        page, _ = open_page(server)
        expect(page.locator(".convs li", has_text="Name three colours.")).to_have_count(1)
        page.locator(".conv-open", has_text="Name three colours.").click()
        expect(page.locator(f"{ANSWER} .md")).not_to_be_empty()
        assert {c["id"] for c in conversations(server)} == before
    finally:
        server.stop()
