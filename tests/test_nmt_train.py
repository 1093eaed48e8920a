"""Training end to end on a tiny prepared directory: files, resume, checkpoints,
repeatability, interrupts, damaged model directories and the translator seam."""

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.nmt.model import ModelConfig, Seq2Seq
from mtcompare.nmt import train as nmt_train
from mtcompare.nmt.train import NMTConfig, load_checkpoint, save_checkpoint, train_nmt
from mtcompare.nmt.translator import NMTTranslator
from mtcompare.translator import load_translator

torch.set_num_threads(1)


NUMBERS = {
    "uno": "one",
    "dos": "two",
    "tres": "three",
    "cuatro": "four",
    "cinco": "five",
    "seis": "six",
    "siete": "seven",
    "ocho": "eight",
}


def _pairs(count: int, offset: int) -> list[tuple[str, str]]:
    words = list(NUMBERS)
    pairs = []
    for index in range(count):
        source = [
            words[(index * 3 + k + offset) % len(words)] for k in range(2 + index % 4)
        ]
        target = [NUMBERS[word] for word in source]
        pairs.append((" ".join(source) + ".", " ".join(target) + "."))
    return pairs


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared directory as 'mtcompare prepare' writes it, in miniature."""
    return _write_prepared(tmp_path / "prep")


def _write_prepared(prep: Path) -> Path:
    prep.mkdir()
    splits = {"train": _pairs(60, 0), "dev": _pairs(12, 1), "test": _pairs(6, 2)}
    for lang, side in (("es", 0), ("en", 1)):
        raw = [pair[side].capitalize() for pair in splits["train"]]
        pre = Preprocessor.train(lang, raw)
        pre.save(prep / f"preprocess.{lang}.json")
        for split, pairs in splits.items():
            lines = [pair[side].capitalize() for pair in pairs]
            (prep / f"{split}.{lang}").write_text(
                "\n".join(lines) + "\n", encoding="utf-8"
            )
            tokens = [" ".join(pre.encode(line)) for line in lines]
            (prep / f"{split}.tok.{lang}").write_text(
                "\n".join(tokens) + "\n", encoding="utf-8"
            )
    manifest = {"corpus": "toy", "src_lang": "es", "tgt_lang": "en", "case": "truecase"}
    (prep / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return prep


def _tiny_config(**changes) -> NMTConfig:
    values = dict(
        vocab_size=40,
        embedding_size=16,
        hidden_size=24,
        dropout=0.1,
        lr=5e-3,
        batch_tokens=120,
        max_steps=12,
        validate_every=6,
        max_minutes=5,
        beam_size=3,
    )
    values.update(changes)
    return NMTConfig(**values)


def test_training_writes_a_complete_model_directory(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config())
    for name in (
        "model.json",
        "config.json",
        "best.pt",
        "last.pt",
        "spm.es.model",
        "spm.en.model",
        "preprocess.es.json",
        "preprocess.en.json",
    ):
        assert (out / name).is_file(), name
    info = json.loads((out / "model.json").read_text())
    assert info["kind"] == "nmt" and info["steps"] == 12
    assert not list(out.glob(".*.tmp"))


def test_resume_continues_from_the_last_checkpoint(
    prepared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.train"):
        train_nmt(prepared, out, _tiny_config(max_steps=12))
    assert "resuming from" in caplog.text
    checkpoint = load_checkpoint(out / "last.pt", torch.device("cpu"))
    assert checkpoint["progress"]["step"] == 12
    assert checkpoint["optimizer"]["state"]  # Adam moments travelled with it
    assert json.loads((out / "model.json").read_text())["steps"] == 12


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_resume_refuses_a_different_architecture_before_touching_anything(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    before = _snapshot(out)
    with pytest.raises(
        MtcError, match="hidden_size 24 there, 32 configured.*new output directory"
    ):
        train_nmt(prepared, out, _tiny_config(hidden_size=32))
    assert _snapshot(out) == before
    assert load_translator(out).translate(["Uno dos ."])


def _interrupt_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Raise KeyboardInterrupt, as Ctrl-C does, before training step ``step + 1``."""
    train_step = nmt_train._TrainingLoop._train_step

    def interrupted(loop: nmt_train._TrainingLoop, indices: list[int]) -> None:
        if loop.progress.step == step:
            raise KeyboardInterrupt
        train_step(loop, indices)

    monkeypatch.setattr(nmt_train._TrainingLoop, "_train_step", interrupted)


def test_interrupted_resume_keeps_the_finished_model_usable(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    _interrupt_at_step(monkeypatch, 8)
    with pytest.raises(KeyboardInterrupt):
        train_nmt(prepared, out, _tiny_config(max_steps=12))
    assert json.loads((out / "model.json").read_text())["steps"] == 6
    assert load_translator(out).translate(["Uno dos ."])
    assert (
        load_checkpoint(out / "last.pt", torch.device("cpu"))["progress"]["step"] == 8
    )


def test_interrupt_before_the_first_validation_saves_last_checkpoint(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    _interrupt_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_nmt(prepared, out, _tiny_config(max_steps=12, validate_every=6))
    checkpoint = load_checkpoint(out / "last.pt", torch.device("cpu"))
    assert checkpoint["progress"]["step"] == 3
    assert checkpoint["progress"]["batch_in_epoch"] == 3
    assert checkpoint["optimizer"]["state"]
    assert not (out / "model.json").exists() and not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    train_nmt(prepared, out, _tiny_config(max_steps=12, validate_every=6))
    assert json.loads((out / "model.json").read_text())["steps"] == 12


def test_interrupt_during_a_parameter_update_saves_nothing_inconsistent(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_update(*args, **kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted_update)
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        train_nmt(prepared, out, _tiny_config())
    assert not (out / "last.pt").exists()


def test_fresh_run_refuses_a_finished_model_without_last_checkpoint(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    (out / "last.pt").unlink()
    before = _snapshot(out)
    with pytest.raises(MtcError, match="holds a finished model"):
        train_nmt(prepared, out, _tiny_config(max_steps=6))
    assert _snapshot(out) == before


def test_damaged_last_checkpoint_is_a_user_error(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    (out / "last.pt").write_text("hello")
    with pytest.raises(MtcError, match="last.pt: not a readable .*cannot resume"):
        train_nmt(prepared, out, _tiny_config(max_steps=12))
    assert load_translator(out).translate(["Uno dos ."])


def test_empty_dev_set_is_refused_before_training(
    prepared: Path, tmp_path: Path
) -> None:
    for lang in ("es", "en"):
        (prepared / f"dev.tok.{lang}").write_text("", encoding="utf-8")
    out = tmp_path / "model"
    with pytest.raises(MtcError, match="dev set is empty.*with a dev set"):
        train_nmt(prepared, out, _tiny_config())
    assert not out.exists()


@pytest.mark.parametrize("vocab_size", [0, 3, 7])
def test_vocabulary_below_the_minimum_is_refused_by_validation(
    vocab_size: int,
) -> None:
    with pytest.raises(MtcError, match="vocab_size must be at least 8"):
        _tiny_config(vocab_size=vocab_size).validate()


def test_vocabulary_smaller_than_the_alphabet_is_a_user_error(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    with pytest.raises(MtcError, match=r"spm\.es: vocab_size 10 .*at least \d+$"):
        train_nmt(prepared, out, _tiny_config(vocab_size=10))
    assert not out.exists()  # no empty output folder left behind


def test_same_seed_gives_the_same_model(prepared: Path, tmp_path: Path) -> None:
    train_nmt(prepared, tmp_path / "a", _tiny_config(max_steps=6))
    train_nmt(prepared, tmp_path / "b", _tiny_config(max_steps=6))
    first = load_checkpoint(tmp_path / "a" / "last.pt", torch.device("cpu"))["model"]
    second = load_checkpoint(tmp_path / "b" / "last.pt", torch.device("cpu"))["model"]
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(30, 30, 8, 8)
    model = Seq2Seq(config).eval()
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "n": 3})
    restored = Seq2Seq(config).eval()
    restored.load_state_dict(
        load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))["model"]
    )
    src, lengths, tgt = (
        torch.tensor([[5, 6, 3]]),
        torch.tensor([3]),
        torch.tensor([[2, 7]]),
    )
    assert torch.equal(model(src, lengths, tgt), restored(src, lengths, tgt))


def test_missing_manifest_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MtcError, match="run 'mtcompare prepare"):
        train_nmt(tmp_path, tmp_path / "model", _tiny_config())


def test_translator_keeps_line_count_and_empty_lines(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config())
    translator = load_translator(out)
    assert translator.name == "nmt"
    lines = ["Uno dos .", "", "Tres cuatro cinco .", " ", "Seis siete " * 300]
    outputs = translator.translate(lines)
    assert len(outputs) == len(lines)
    assert outputs[1] == "" and outputs[3] == ""
    assert all(isinstance(output, str) for output in outputs)
    assert translator.translate([]) == []


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished model directory, shared by the damage tests below."""
    base = tmp_path_factory.mktemp("trained")
    out = base / "model"
    train_nmt(_write_prepared(base / "prep"), out, _tiny_config(max_steps=6))
    return out


def _edit_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        settings = json.loads((model_dir / "config.json").read_text())
        change(settings)
        (model_dir / "config.json").write_text(json.dumps(settings))

    return damage


def _flip_bits(model_dir: Path) -> None:
    data = bytearray((model_dir / "best.pt").read_bytes())
    for index in range(100, 300):  # inside the pickled record, after the zip header
        data[index] ^= 0xFF
    (model_dir / "best.pt").write_bytes(bytes(data))


def _change_hidden_size(model_dir: Path) -> None:
    checkpoint = torch.load(model_dir / "best.pt", weights_only=True)
    checkpoint["model_config"]["hidden_size"] = 32
    torch.save(checkpoint, model_dir / "best.pt")


DAMAGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "truncated config": (
        "config.json:",
        lambda d: (d / "config.json").write_text((d / "config.json").read_text()[:50]),
    ),
    "config is a list": ("config.json", lambda d: (d / "config.json").write_text("[]")),
    "config without checkpoint": (
        "config.json",
        _edit_config(lambda settings: settings.pop("checkpoint")),
    ),
    "beam size out of range": (
        "config.json",
        _edit_config(lambda settings: settings["nmt"].update(beam_size=0)),
    ),
    "checkpoint is text": ("best.pt", lambda d: (d / "best.pt").write_text("hello")),
    "checkpoint with flipped bits": ("best.pt", _flip_bits),
    "empty checkpoint": ("best.pt", lambda d: torch.save({}, d / "best.pt")),
    "checkpoint missing": ("best.pt", lambda d: (d / "best.pt").unlink()),
    "changed hidden size": ("best.pt", _change_hidden_size),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_model_directory_gives_one_line_naming_the_file(
    trained_model: Path, tmp_path: Path, damage: str
) -> None:
    file_name, spoil = DAMAGES[damage]
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model, model_dir)
    spoil(model_dir)
    with pytest.raises(MtcError) as caught:
        NMTTranslator.load(model_dir)
    message = str(caught.value)
    assert message.startswith(str(model_dir / file_name))
    assert message.endswith("train it again with 'mtcompare train nmt'")
    assert "\n" not in message and len(message) < 250 + len(str(model_dir))
    assert message.count("size mismatch") <= 1


def test_config_value_out_of_range_names_the_setting(
    trained_model: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model, model_dir)
    _edit_config(lambda settings: settings["nmt"].update(beam_size=0))(model_dir)
    with pytest.raises(MtcError, match=r"config\.json: NMT option beam_size must be"):
        NMTTranslator.load(model_dir)
