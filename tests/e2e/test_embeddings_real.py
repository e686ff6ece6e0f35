"""Embeddings with the real starter model: through the official client, and in process to see
how many decodes a request took."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import openai
import pytest

from hearth import Hearth
from tests.e2e.conftest import STARTER_ID, RunningServer, start_server

pytestmark = pytest.mark.e2e

CAT = "The cat sat on the mat."
KITTEN = "A kitten was sitting on the rug."
UNRELATED = ["Interest rates rose sharply in March.", "The compiler rejected the template."]


def vectors(
    client: openai.OpenAI, texts: list[str], model: str = STARTER_ID, **kw: object
) -> list[np.ndarray]:
    r = client.embeddings.create(model=model, input=texts, **kw)  # type: ignore[arg-type]
    assert [d.index for d in r.data] == list(range(len(texts)))
    return [np.asarray(d.embedding, dtype=np.float64) for d in r.data]


def test_same_text_same_vector_across_calls_and_batches(server: RunningServer) -> None:
    client = server.client()
    alone = vectors(client, [CAT], encoding_format="float")[0]
    again = vectors(client, [CAT], encoding_format="float")[0]
    in_batch = vectors(client, [KITTEN, *UNRELATED, CAT], encoding_format="float")[3]
    reordered = vectors(client, [CAT, *UNRELATED], encoding_format="float")[0]
    assert np.array_equal(alone, again)
    assert np.array_equal(alone, in_batch)
    assert np.array_equal(alone, reordered)
    assert np.linalg.norm(alone) == pytest.approx(1.0, abs=1e-5)
    assert alone.shape == (576,)


def test_similar_sentences_are_closer(server: RunningServer) -> None:
    cat, kitten, *others = vectors(server.client(), [CAT, KITTEN, *UNRELATED])
    for other in others:
        assert cat @ kitten > cat @ other


def test_sdk_default_base64_matches_floats(server: RunningServer) -> None:
    client = server.client()
    default = client.embeddings.create(model=STARTER_ID, input=CAT)  # the SDK asks for base64
    floats = client.embeddings.create(model=STARTER_ID, input=CAT, encoding_format="float")
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=0)
    assert default.usage.prompt_tokens == floats.usage.prompt_tokens > 0


def test_token_arrays_and_usage(server: RunningServer) -> None:
    client = server.client()
    text = client.embeddings.create(model=STARTER_ID, input=CAT, encoding_format="float")
    tokens = list(range(100, 110))
    r = client.embeddings.create(model=STARTER_ID, input=[tokens, tokens[:4]])
    assert r.usage.prompt_tokens == 14 and r.usage.total_tokens == 14
    assert len(r.data) == 2 and len(r.data[0].embedding) == len(text.data[0].embedding)


def test_too_long_input_is_400(server: RunningServer) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=STARTER_ID, input="word " * 9000)
    assert info.value.code == "context_length_exceeded"
    assert "tokens" in info.value.message and "8192" in info.value.message
    assert client.embeddings.create(model=STARTER_ID, input=CAT).data


def test_embeddings_do_not_disturb_generation(server: RunningServer) -> None:
    client = server.client()
    ask = [{"role": "user", "content": "Name three colours of the rainbow."}]
    alone = client.chat.completions.create(
        model=STARTER_ID,
        messages=ask,
        temperature=0,
        max_tokens=30,  # type: ignore[arg-type]
    )
    stop = threading.Event()

    def embed_meanwhile() -> None:
        while not stop.is_set():
            client.embeddings.create(model=STARTER_ID, input=[CAT, KITTEN, *UNRELATED])

    worker = threading.Thread(target=embed_meanwhile)
    worker.start()
    try:
        during = client.chat.completions.create(
            model=STARTER_ID,
            messages=ask,
            temperature=0,
            max_tokens=30,  # type: ignore[arg-type]
        )
    finally:
        stop.set()
        worker.join()
    assert during.choices[0].message.content == alone.choices[0].message.content


def test_many_inputs_take_few_decodes(starter_model: Path, tmp_path: Path) -> None:
    (tmp_path / "config.toml").touch()

    async def run() -> tuple[int, int]:
        async with Hearth(
            model=[str(starter_model)], models_dir=tmp_path, config=tmp_path / "config.toml"
        ) as h:
            texts = [f"Sentence number {i} is about topic {i % 7}." for i in range(40)]
            r = await h.embeddings.create(model=STARTER_ID, input=texts)
            engine = (await h.runtime.models.get(STARTER_ID)).engine
            return len(r.data), engine.status().embed_decodes

    count, decodes = asyncio.run(run())
    assert count == 40
    assert decodes <= 2  # 40 short inputs, up to 32 per decode


GEMMA_ID = "gemma-3-270m-q4_k_m"


@pytest.fixture(scope="module")
def gemma_vectors(
    tmp_path_factory: pytest.TempPathFactory, gemma3_model: Path
) -> dict[str, list[list[np.ndarray]]]:
    """Gemma 3 270M (a second architecture) under each pooling: per pooling, three requests'
    vectors: [CAT, KITTEN], again [CAT, KITTEN], then [KITTEN, *UNRELATED, CAT]. One server
    at a time."""
    out = {}
    for pooling in ("auto", "cls", "last"):
        server = start_server(
            tmp_path_factory.mktemp(f"gemma-{pooling}"), gemma3_model,
            "--pooling", pooling, "--parallel", "1", "--ctx-size", "512",
        )  # fmt: skip
        try:
            client = server.client()
            out[pooling] = [
                vectors(client, [CAT, KITTEN], model=GEMMA_ID, encoding_format="float"),
                vectors(client, [CAT, KITTEN], model=GEMMA_ID),  # base64, the SDK's default
                vectors(client, [KITTEN, *UNRELATED, CAT], model=GEMMA_ID),
            ]
        finally:
            server.stop()
    return out


@pytest.mark.parametrize("pooling", ["auto", "cls", "last"])
def test_any_gguf_and_pooling_gives_deterministic_unit_vectors(
    gemma_vectors: dict[str, list[list[np.ndarray]]], pooling: str
) -> None:
    first, again, batched = gemma_vectors[pooling]
    for vec in (*first, *batched):
        assert vec.shape == (640,)  # Gemma 3 270M's width, not the starter's 576
        assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    # Batched with other texts: the same vector, though not to the bit on this architecture
    # (llama.cpp's Gemma 3 graph changes the last bit with the batch; the starter's does not).
    np.testing.assert_allclose(first[0], batched[-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(first[1], batched[0], rtol=0, atol=1e-6)


def test_pooling_flag_changes_the_vectors(gemma_vectors: dict[str, list[list[np.ndarray]]]) -> None:
    # Gemma declares no pooling, so auto is mean; cls and last are other vectors.
    mean, cls, last = (gemma_vectors[p][0] for p in ("auto", "cls", "last"))
    for other in (cls, last):
        for a, b in zip(mean, other, strict=True):
            assert not np.allclose(a, b, atol=1e-3)
    # cls is the first token's state; in a causal model that is the BOS token's alone, the
    # same for every text. The last token's state has read the whole text.
    assert np.array_equal(cls[0], cls[1])
    assert not np.allclose(last[0], last[1], atol=1e-3)


@pytest.mark.parametrize("pooling", ["auto", "last"])
def test_similar_sentences_are_closer_with_gemma(
    gemma_vectors: dict[str, list[list[np.ndarray]]], pooling: str
) -> None:
    kitten, *others, cat = gemma_vectors[pooling][2]
    for other in others:
        assert cat @ kitten > cat @ other
