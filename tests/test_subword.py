"""SentencePiece training, loading and the token-line round trip."""

from pathlib import Path

import pytest

from mtcompare.data.subword import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    UNK_ID,
    SubwordModel,
    train_sentencepiece,
)
from mtcompare.errors import MtcError

LINES = [
    "in the beginning god created the heaven and the earth .",
    "and the earth was without form , and void ; and darkness was upon the deep .",
    "and god said , let there be light : and there was light .",
    "and god saw the light , that it was good .",
] * 5


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_round_trip_gives_back_the_token_line(tmp_path: Path, model_type: str) -> None:
    model = train_sentencepiece(LINES, tmp_path / "spm", 60, model_type)
    for line in LINES[:4]:
        assert model.decode(model.encode(line)) == line
        assert model.decode(model.encode_ids(line)) == line


def test_special_ids_are_reserved_and_skipped_when_decoding(tmp_path: Path) -> None:
    model = train_sentencepiece(LINES, tmp_path / "spm", 60)
    ids = model.encode_ids(LINES[0])
    assert min(ids) > EOS_ID
    assert [model.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
    ]
    assert model.decode([BOS_ID] + ids + [EOS_ID, PAD_ID]) == LINES[0]


def test_vocabulary_larger_than_corpus_allows_is_soft(tmp_path: Path) -> None:
    model = train_sentencepiece(LINES, tmp_path / "spm", 5000)
    assert 4 < model.vocab_size < 5000


def test_load_reads_what_train_wrote(tmp_path: Path) -> None:
    trained = train_sentencepiece(LINES, tmp_path / "spm", 60)
    loaded = SubwordModel.load(tmp_path / "spm.model")
    assert loaded.vocab_size == trained.vocab_size
    assert loaded.encode(LINES[2]) == trained.encode(LINES[2])


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MtcError, match="valid: unigram, bpe"):
        train_sentencepiece(LINES, tmp_path / "spm", 60, "char")
    with pytest.raises(MtcError, match="no non-empty"):
        train_sentencepiece(["", " "], tmp_path / "spm", 60)
    with pytest.raises(MtcError, match="not found"):
        SubwordModel.load(tmp_path / "missing.model")


def test_vocabulary_below_the_minimum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MtcError, match=f"at least {MIN_VOCAB_SIZE}"):
        train_sentencepiece(LINES, tmp_path / "out" / "spm", 3)
    assert not (tmp_path / "out").exists()


def test_vocabulary_smaller_than_the_alphabet_says_how_large_it_must_be(
    tmp_path: Path,
) -> None:
    characters = {char for line in LINES for char in line if char != " "}
    needed = len(characters) + 1 + 4  # the word boundary and the reserved pieces
    with pytest.raises(MtcError) as caught:
        train_sentencepiece(LINES, tmp_path / "out" / "spm", needed - 1)
    message = str(caught.value)
    assert message.endswith(f"set vocab_size to at least {needed}")
    assert "\n" not in message and "trainer_interface" not in message
    assert not (tmp_path / "out").exists()  # the folder it made is gone again
    model = train_sentencepiece(LINES, tmp_path / "out" / "spm", needed)
    assert model.vocab_size >= needed


def test_damaged_model_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "spm.model").write_bytes(b"\xff" * 64)
    with pytest.raises(MtcError, match="not a SentencePiece model") as caught:
        SubwordModel.load(tmp_path / "spm.model")
    assert "\n" not in str(caught.value)
