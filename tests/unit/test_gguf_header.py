from __future__ import annotations

import os
from pathlib import Path

import pytest
from gguf import GGUFReader, GGUFValueType, LlamaFileType

from hearth.models.gguf_header import GGUFError, read_header


def test_reads_starter_model_metadata(starter_model: Path) -> None:
    h = read_header(starter_model)
    assert h.architecture == "llama"
    assert h.context_length == 8192
    assert h.quantization == "Q4_1"
    assert 130_000_000 < h.n_params < 140_000_000
    assert h.chat_template and "im_start" in h.chat_template
    assert h.array_lengths["tokenizer.ggml.tokens"] == 49152
    assert h.tokenizer == "gpt2"


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(GGUFError, match="empty"):
        read_header(p)


def test_bad_magic(tmp_path: Path) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"NOPE" + bytes(60))
    with pytest.raises(GGUFError, match="magic"):
        read_header(p)


def test_truncated_mid_tensor(tmp_path: Path, starter_model: Path) -> None:
    p = tmp_path / "cut.gguf"
    with starter_model.open("rb") as src:
        p.write_bytes(src.read(50_000_000))
    with pytest.raises(GGUFError, match="truncated or corrupt"):
        read_header(p)


def test_real_tensor_table_over_missing_data(tmp_path: Path, starter_model: Path) -> None:
    """CVE-2024-12055's case: a real tensor table whose data is not all in the file. Sparse
    zeros stand in for the weights, since only the header is read; one byte short is refused,
    naming the tensor that would be read out of bounds."""
    header = read_header(starter_model)
    last = max(header.tensors, key=lambda t: t.offset + t.n_bytes)
    end = header.data_offset + last.offset + last.n_bytes
    p = tmp_path / "cut.gguf"
    with starter_model.open("rb") as src:
        p.write_bytes(src.read(header.data_offset))
    os.truncate(p, end - 1)
    with pytest.raises(
        GGUFError, match=f"tensor '{last.name}' ends at byte {end - header.data_offset} "
    ):
        read_header(p)
    os.truncate(p, end)
    assert len(read_header(p).tensors) == len(header.tensors)


# Not named `model`: that is the session fixture (a loaded NativeModel) in conftest.py.
@pytest.mark.parametrize("model_fixture", ["starter_model", "gemma3_model"])
def test_header_agrees_with_the_gguf_package(
    model_fixture: str, request: pytest.FixtureRequest
) -> None:
    """Our bounded reader (kept for speed) must read what the reference reader reads. The
    reference parses every vocabulary entry (~20 s for Gemma's 262k): it runs once per model."""
    path: Path = request.getfixturevalue(model_fixture)
    ours = read_header(path)
    reader = GGUFReader(path)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}

    def value(key: str) -> object:
        return fields[key].contents()

    assert ours.version == reader.fields["GGUF.version"].contents()
    # Every metadata key, in file order; scalars, strings and short arrays by value, long
    # arrays (the vocabulary) by length.
    assert list(ours.metadata) == list(fields)
    for key, field in fields.items():
        if field.types[0] == GGUFValueType.ARRAY:
            assert ours.array_lengths[key] == len(field.data), key
            if ours.metadata[key] is not None:
                assert ours.metadata[key] == field.contents(), key
        else:
            assert ours.metadata[key] == field.contents(), key
    # What /v1/models and `hearth models` show.
    arch = value("general.architecture")
    assert ours.architecture == arch
    assert ours.context_length == value(f"{arch}.context_length")
    file_type = LlamaFileType(value("general.file_type")).name
    assert ours.quantization == file_type.removeprefix("MOSTLY_")
    assert ours.quantization.lower() in path.name.lower()  # Q4_1, Q4_K_M
    assert ours.chat_template == (
        value("tokenizer.chat_template") if "tokenizer.chat_template" in fields else None
    )
    assert ours.tokenizer == value("tokenizer.ggml.model")
    assert ours.n_params == sum(t.n_elements for t in reader.tensors)
    # Tensors: where llama.cpp will look for each one's data.
    assert ours.data_offset == reader.data_offset
    assert len(ours.tensors) == len(reader.tensors) > 0
    for mine, theirs in zip(ours.tensors, reader.tensors, strict=True):
        assert mine.name == theirs.name
        assert mine.shape == tuple(theirs.shape.tolist()), mine.name
        assert mine.ggml_type == theirs.tensor_type, mine.name
        assert ours.data_offset + mine.offset == theirs.data_offset, mine.name
        assert mine.n_bytes == theirs.n_bytes, mine.name
