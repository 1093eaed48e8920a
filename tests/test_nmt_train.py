"""Training end to end on a tiny prepared directory: files, resume, checkpoints,
repeatability, interrupts, damaged model directories and the translator seam."""

import json
import logging
import math
import os
import re
import shutil
import signal
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
    assert "continues to the configured total of 5 minutes or 12 steps" in caplog.text
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


# ---- the learning-rate schedule, the loss, checkpoints ---------------------------


def test_label_smoothed_loss_by_hand() -> None:
    # vocabulary of 4 (id 0 is padding); logits log(1, 1, 2, 4) give
    # p = (1/8, 1/8, 2/8, 4/8). Position 1 has reference piece 3 (p = 1/2),
    # position 2 is padding and must not count.
    logits = torch.log(torch.tensor([[[1.0, 1.0, 2.0, 4.0], [1.0, 1.0, 1.0, 1.0]]]))
    targets = torch.tensor([[3, 0]])
    smoothed, nll = nmt_train.label_smoothed_losses(logits, targets, 0.1)
    # nll = -log(1/2) = log 2; cross-entropy to the uniform distribution is the
    # mean of -log p = (log 8 + log 8 + log 4 + log 2) / 4 = (3+3+2+1)/4 log 2
    log2 = math.log(2)
    assert float(nll) == pytest.approx(log2)
    assert float(smoothed) == pytest.approx(0.9 * log2 + 0.1 * 9 / 4 * log2)
    unsmoothed, _ = nmt_train.label_smoothed_losses(logits, targets, 0.0)
    assert float(unsmoothed) == pytest.approx(log2)


def test_warmup_rises_linearly_then_stays() -> None:
    # 4 warm-up steps: lr x 1/4, 2/4, 3/4, then the full rate
    factors = [nmt_train.warmup_factor(step, 4) for step in range(1, 7)]
    assert factors == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert nmt_train.warmup_factor(1, 0) == 1.0


def test_warmup_sets_the_optimizer_rate(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=3, lr=4e-3, warmup_steps=4))
    checkpoint = load_checkpoint(out / "last.pt", torch.device("cpu"))
    # the third update ran at 3/4 of 4e-3
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(3e-3)
    assert checkpoint["progress"]["history"][-1]["lr"] == pytest.approx(3e-3)


def _plateau_walk(
    config: NMTConfig, scores: list[float], first_step: int = 100
) -> tuple[list[bool], list[float]]:
    progress = nmt_train.TrainingProgress(lr=config.lr)
    lowered, rates = [], []
    for index, score in enumerate(scores):
        progress.step = first_step + index
        lowered.append(nmt_train.update_plateau(progress, score, config))
        rates.append(progress.lr)
    return lowered, rates


def test_plateau_decay_on_a_constructed_sequence_of_perplexities() -> None:
    config = _tiny_config(lr=2e-3, patience=2, lr_decay=0.5, min_lr=3e-4)
    perplexities = [10, 9, 9.5, 9.2, 9.1, 8, 8.5, 8.6, 8.7, 8.8, 8.9, 9.0]
    lowered, rates = _plateau_walk(config, perplexities)
    # 10, 9 improve; 9.5 is the 1st without improvement, 9.2 the 2nd: halve to
    # 1e-3; 9.1 the 3rd; 8 improves; 8.5 1st, 8.6 2nd: 5e-4; 8.7 3rd; 8.8 4th:
    # 2.5e-4 is below min_lr, so 3e-4; 8.9 5th; 9.0 6th: already at min_lr
    assert lowered == [0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0]
    expected = [2e-3] * 3 + [1e-3] * 4 + [5e-4] * 2 + [3e-4] * 3
    assert rates == pytest.approx(expected)


def test_plateau_on_bleu_and_inside_the_warmup() -> None:
    config = _tiny_config(
        lr=1e-3, patience=1, validation_metric="bleu", warmup_steps=101
    )
    # BLEU must rise: 5 best, 4 (step 101, inside the warm-up) only recorded,
    # 4 (step 102) not better: halve, 6 improves, 6 equal is no improvement
    lowered, rates = _plateau_walk(config, [5, 4, 4, 6, 6])
    assert lowered == [0, 0, 1, 0, 1]
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


def _scripted_dev_bleu(
    monkeypatch: pytest.MonkeyPatch, scores: list[float]
) -> list[float]:
    """Make validation report ``scores`` as dev BLEU, one per call, in order."""
    remaining = list(scores)

    def scripted(*args, **kwargs) -> tuple[float, str]:
        return remaining.pop(0), "scripted"

    monkeypatch.setattr(nmt_train, "dev_bleu", scripted)
    return remaining


def test_best_k_keeps_exactly_k_files_and_the_right_ones(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # validations at steps 2, 4, 6, 8, 10 score 3, 5, 4, 6, 5. The two best:
    # step 6 (6) and step 4 (5); step 10 ties step 4 and the earlier stays.
    remaining = _scripted_dev_bleu(monkeypatch, [3, 5, 4, 6, 5])
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=10, validate_every=2, keep_best=2))
    assert not remaining
    kept = sorted(path.name for path in out.glob("best-step-*.pt"))
    assert kept == ["best-step-4.pt", "best-step-8.pt"]
    device = torch.device("cpu")
    for step in (4, 8):
        saved = load_checkpoint(out / f"best-step-{step}.pt", device)
        assert saved["progress"]["step"] == step and "optimizer" not in saved
    assert load_checkpoint(out / "best.pt", device)["progress"]["step"] == 8
    last = load_checkpoint(out / "last.pt", device)["progress"]
    assert last["kept_checkpoints"] == [
        {"step": 8, "dev_bleu": 6},
        {"step": 4, "dev_bleu": 5},
    ]


def test_early_stopping_after_patience_validations(
    prepared: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # BLEU 5, 7, 6, 6.5: the 3rd and 4th validations (steps 6 and 8) do not
    # beat 7, so with patience 2 training stops after step 8 of 40
    _scripted_dev_bleu(monkeypatch, [5, 7, 6, 6.5])
    config = _tiny_config(
        max_steps=40,
        validate_every=2,
        validation_metric="bleu",
        early_stopping_patience=2,
        lr_decay=1.0,
    )
    out = tmp_path / "model"
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.train"):
        train_nmt(prepared, out, config)
    progress = load_checkpoint(out / "last.pt", torch.device("cpu"))["progress"]
    assert progress["step"] == 8 and len(progress["history"]) == 4
    assert "early stopping: dev bleu has not improved for 2 validations" in caplog.text
    assert json.loads((out / "model.json").read_text())["best_step"] == 4


def test_checkpoint_average_is_the_mean_of_the_parameters(tmp_path: Path) -> None:
    config = ModelConfig(20, 20, 8, 8, tie_target_embeddings=True)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(Seq2Seq(config))
        save_checkpoint(tmp_path / f"{seed}.pt", {"model": models[-1].state_dict()})
    average = nmt_train.average_checkpoints([tmp_path / f"{s}.pt" for s in range(3)])
    for name, value in models[0].state_dict().items():
        stacked = torch.stack([model.state_dict()[name] for model in models])
        assert torch.allclose(average[name], stacked.mean(dim=0), atol=1e-7), name
        assert average[name].dtype == value.dtype
    assert not torch.equal(average["output.weight"], models[0].output.weight)
    averaged = Seq2Seq(config)
    averaged.load_state_dict(average)  # a network of the same shapes
    other = Seq2Seq(ModelConfig(20, 20, 8, 12))
    save_checkpoint(tmp_path / "other.pt", {"model": other.state_dict()})
    with pytest.raises(MtcError, match="other.pt: not a checkpoint of the same"):
        nmt_train.average_checkpoints([tmp_path / "0.pt", tmp_path / "other.pt"])


def test_averaged_checkpoint_translates_when_its_dev_bleu_is_higher(
    prepared: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # validations at steps 2, 4, 6 score 3, 5, 4: steps 4 and 6 are kept; their
    # average then scores 9 (the 4th call), above the best single one
    _scripted_dev_bleu(monkeypatch, [3, 5, 4, 9])
    config = _tiny_config(
        max_steps=6, validate_every=2, keep_best=2, average_checkpoints=True
    )
    out = tmp_path / "model"
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.train"):
        train_nmt(prepared, out, config)
    assert json.loads((out / "config.json").read_text())["checkpoint"] == "averaged.pt"
    info = json.loads((out / "model.json").read_text())
    assert "averaged.pt" in info["translation_files"]
    assert info["checkpoint_dev_bleu"] == 9 and info["best_dev_bleu"] == 5
    assert (
        "dev BLEU 9.00, the best single one (step 4) 5.00: translating with "
        "averaged.pt" in caplog.text
    )
    device = torch.device("cpu")
    averaged = load_checkpoint(out / "averaged.pt", device)["model"]
    kept = [load_checkpoint(out / f"best-step-{s}.pt", device)["model"] for s in (4, 6)]
    for name, value in averaged.items():
        assert torch.allclose(value, (kept[0][name] + kept[1][name]) / 2, atol=1e-7)
    assert load_translator(out).translate(["Uno dos ."])


def test_best_single_checkpoint_translates_when_the_average_is_worse(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_dev_bleu(monkeypatch, [3, 5, 4, 1])
    config = _tiny_config(
        max_steps=6, validate_every=2, keep_best=2, average_checkpoints=True
    )
    out = tmp_path / "model"
    train_nmt(prepared, out, config)
    assert json.loads((out / "config.json").read_text())["checkpoint"] == "best.pt"
    assert not (out / "averaged.pt").exists()


# ---- resume ----------------------------------------------------------------------


def _record_losses(monkeypatch: pytest.MonkeyPatch) -> dict[int, float]:
    """Collect the loss of every training step, by the step number it made."""
    losses: dict[int, float] = {}
    train_step = nmt_train._TrainingLoop._train_step

    def recorded(loop: nmt_train._TrainingLoop, indices: list[int]) -> float:
        loss = train_step(loop, indices)
        losses[loop.progress.step] = loss
        return loss

    monkeypatch.setattr(nmt_train._TrainingLoop, "_train_step", recorded)
    return losses


def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dropout and word dropout draw random numbers and the warm-up changes the
    # rate at every step, so this needs the generator, the optimizer and the
    # schedule restored exactly; the run crosses an epoch (about 5 batches)
    losses = _record_losses(monkeypatch)
    changes = dict(validate_every=4, warmup_steps=6, src_word_dropout=0.2)
    train_nmt(prepared, tmp_path / "whole", _tiny_config(max_steps=10, **changes))
    uninterrupted = dict(losses)
    losses.clear()
    train_nmt(prepared, tmp_path / "parts", _tiny_config(max_steps=4, **changes))
    train_nmt(prepared, tmp_path / "parts", _tiny_config(max_steps=10, **changes))
    assert sorted(losses) == list(range(1, 11))
    assert all(math.isfinite(loss) for loss in losses.values())
    assert [losses[step] for step in range(5, 11)] == [
        uninterrupted[step] for step in range(5, 11)
    ]


def _rewrite_last_checkpoint(out: Path, change: Callable[[dict], None]) -> None:
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, out / "last.pt")


def _as_before_the_new_fields(checkpoint: dict) -> None:
    """What a last.pt looked like before the model and progress gained fields."""
    for name in (
        "decoder_hidden_size",
        "encoder_connection",
        "decoder_connection",
        "src_word_dropout",
        "tgt_word_dropout",
        "word_dropout_mode",
        "output_projection",
        "tie_target_embeddings",
    ):
        del checkpoint["model_config"][name]
    for name in ("plateau_best", "validations_without_improvement", "kept_checkpoints"):
        del checkpoint["progress"][name]
    del checkpoint["subwords"], checkpoint["world_size"]


def test_resume_accepts_a_checkpoint_from_before_the_new_model_fields(
    prepared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=4))
    _rewrite_last_checkpoint(out, _as_before_the_new_fields)
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.train"):
        train_nmt(prepared, out, _tiny_config(max_steps=8, dropout=0.3))
    assert "dropout was 0.1, the run resumes with 0.3" in caplog.text
    assert "cannot be checked" in caplog.text  # no subword settings saved then
    assert (
        load_checkpoint(out / "last.pt", torch.device("cpu"))["progress"]["step"] == 8
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vocab_size": 45}, "vocab_size 40 there, 45 configured"),
        ({"subword_type": "bpe"}, "subword_type unigram there, bpe configured"),
        ({"joint_vocabulary": True}, "joint_vocabulary False there, True configured"),
    ],
)
def test_resume_refuses_other_subword_settings(
    prepared: Path, tmp_path: Path, change: dict, message: str
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=4))
    before = _snapshot(out)
    with pytest.raises(MtcError) as caught:
        train_nmt(prepared, out, _tiny_config(max_steps=8, **change))
    assert message in str(caught.value)
    assert str(caught.value).endswith(
        "set them back, or train into a new output " "directory"
    )
    assert _snapshot(out) == before


def test_sigterm_saves_the_last_checkpoint_like_ctrl_c(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_step = nmt_train._TrainingLoop._train_step

    def killed(loop: nmt_train._TrainingLoop, indices: list[int]) -> float:
        if loop.progress.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(loop, indices)

    monkeypatch.setattr(nmt_train._TrainingLoop, "_train_step", killed)
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        train_nmt(prepared, out, _tiny_config())
    step = load_checkpoint(out / "last.pt", torch.device("cpu"))["progress"]["step"]
    assert step in (3, 4)  # the signal lands before or just after the 4th step
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_stray_files_of_an_interrupted_run_are_removed_on_resume(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=4, validate_every=2, keep_best=2))
    (out / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    shutil.copy(out / "best-step-4.pt", out / "best-step-3.pt")  # listed nowhere
    train_nmt(prepared, out, _tiny_config(max_steps=6, validate_every=2, keep_best=2))
    assert not list(out.glob(".*.tmp")) and not (out / "best-step-3.pt").exists()


# ---- devices, precision, settings --------------------------------------------------


def test_bfloat16_autocast_on_the_cpu_trains(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=4, precision="bfloat16"))
    history = load_checkpoint(out / "last.pt", torch.device("cpu"))["progress"][
        "history"
    ]
    assert all(math.isfinite(entry["train_loss"]) for entry in history)
    assert load_translator(out).translate(["Uno dos ."])


def test_loss_scaling_step_updates_the_weights_on_the_cpu() -> None:
    # the float16 path (scale, unscale, clip, step, update) with a CPU scaler
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(20, 20, 8, 8, dropout=0.0))
    before = [parameter.detach().clone() for parameter in model.parameters()]
    precision = nmt_train.MixedPrecision("float32", torch.device("cpu"))
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    src, lengths, tgt = (
        torch.tensor([[5, 6, 3]]),
        torch.tensor([3]),
        torch.tensor([[2, 7]]),
    )
    with precision.autocast():
        smoothed, _ = nmt_train.label_smoothed_losses(
            model(src, lengths, tgt), torch.tensor([[7, 3]]), 0.1
        )
    precision.scaler.scale(smoothed).backward()
    precision.scaler.unscale_(optimizer)
    # the unscaled gradient is the true one: the scale of 1024 is divided out
    true_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
    model.zero_grad()
    smoothed.detach_()
    with precision.autocast():
        again, _ = nmt_train.label_smoothed_losses(
            model(src, lengths, tgt), torch.tensor([[7, 3]]), 0.1
        )
    again.backward()
    assert float(true_norm) == pytest.approx(
        float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)), rel=1e-5
    )
    precision.scaler.step(optimizer)
    precision.scaler.update()
    assert any(
        not torch.equal(old, new.detach())
        for old, new in zip(before, model.parameters())
    )


def test_float16_on_the_cpu_is_refused(prepared: Path, tmp_path: Path) -> None:
    config = _tiny_config(precision="float16", device="cpu")
    with pytest.raises(MtcError, match="float16 needs a CUDA GPU.*bfloat16 or float32"):
        train_nmt(prepared, tmp_path / "model", config)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(MtcError, match="no CUDA GPU; set device=cpu or auto"):
        train_nmt(prepared, tmp_path / "model", _tiny_config(device="cuda"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"validation_metric": "loss"}, "valid: perplexity, bleu"),
        ({"device": "tpu"}, "valid: auto, cpu, cuda"),
        ({"precision": "fp8"}, "valid: float32, bfloat16, float16"),
        ({"patience": 0}, "patience must be at least 1"),
        ({"keep_best": 0}, "keep_best must be at least 1"),
        ({"dev_beam_size": 0}, "dev_beam_size must be at least 1"),
        ({"warmup_steps": -1}, "warmup_steps must be at least 0 (0: off)"),
        ({"early_stopping_patience": -2}, "early_stopping_patience must be at least 0"),
        ({"min_lr": 0.1}, "min_lr must be in [0, lr]"),
        ({"average_checkpoints": True}, "needs keep_best of at least 2, got 1"),
    ],
)
def test_new_settings_are_validated(change: dict, message: str) -> None:
    with pytest.raises(MtcError) as caught:
        _tiny_config(**change).validate()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_torchrun_environment_is_read_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert nmt_train.Ranks.from_environment() == nmt_train.Ranks(0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = nmt_train.Ranks.from_environment()
    assert ranks.distributed and not ranks.is_main and ranks.local_rank == 1
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(MtcError, match="0 <= RANK < WORLD_SIZE"):
        nmt_train.Ranks.from_environment()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(MtcError, match="RANK='one' is not a whole number"):
        nmt_train.Ranks.from_environment()


def test_several_processes_need_torchrun_addresses(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(
        MtcError, match="MASTER_ADDR and MASTER_PORT are not set.*torchrun"
    ):
        train_nmt(prepared, tmp_path / "model", _tiny_config())


def test_joint_vocabulary_model_trains_and_translates(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(
        prepared, out, _tiny_config(max_steps=4, vocab_size=60, joint_vocabulary=True)
    )
    assert (out / "spm.es.model").read_bytes() == (out / "spm.en.model").read_bytes()
    assert load_translator(out).translate(["Uno dos ."])


# ---- the translator's n-best lists and attention --------------------------------


def test_nbest_lists_are_best_first_and_start_with_the_translation(
    trained_model: Path,
) -> None:
    translator = NMTTranslator.load(trained_model)
    lines = ["Uno dos .", "", "Tres cuatro cinco ."]
    lists = translator.translate_nbest(lines, 3)
    assert [len(entries) for entries in lists] == [3, 1, 3]
    assert lists[1][0].text == "" and lists[1][0].score == 0.0
    assert [entries[0].text for entries in lists] == translator.translate(lines)
    for entries in (lists[0], lists[2]):
        scores = [entry.score for entry in entries]
        assert scores == sorted(scores, reverse=True)
        for entry in entries:
            match = re.fullmatch(r"logprob= (-[\d.e+-]+)", entry.features)
            assert match and entry.trace == ""
            # score = log P / |y|^1 and |y| >= 1, so it lies in [log P, 0]
            assert float(match.group(1)) <= entry.score + 1e-6 <= 1e-6
    # a list longer than the beam widens the beam (3 -> 5)
    assert len(translator.translate_nbest(["Uno dos ."], 5)[0]) == 5


def test_cli_writes_an_nbest_list_for_an_nmt_model(
    trained_model: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from mtcompare.cli import cli

    source = tmp_path / "in.txt"
    source.write_text("Uno dos .\nSeis siete .\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        [
            "translate",
            str(trained_model),
            "-i",
            str(source),
            "-o",
            str(tmp_path / "out.txt"),
            "--n-best",
            "2",
            "--n-best-out",
            str(tmp_path / "nbest.txt"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [
        line.split(" ||| ")
        for line in (tmp_path / "nbest.txt").read_text(encoding="utf-8").splitlines()
    ]
    assert [row[0] for row in rows] == ["0", "0", "1", "1"]
    assert all(row[2].startswith("logprob= ") and len(row) == 4 for row in rows)
    translations = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert translations == [rows[0][1], rows[2][1]]


def test_attention_rows_sum_to_one_over_the_source_pieces(
    trained_model: Path,
) -> None:
    translator = NMTTranslator.load(trained_model)
    line = "Tres cuatro cinco ."
    source_pieces, target_pieces, matrix = translator.attention(line)
    assert source_pieces[-1] == target_pieces[-1] == "</s>"
    expected_source = translator.source_subwords.encode(
        " ".join(translator.source_preprocessor.encode(line))
    )
    assert source_pieces[:-1] == expected_source
    assert len(matrix) == len(target_pieces)
    for row in matrix:
        assert len(row) == len(source_pieces)
        assert sum(row) == pytest.approx(1.0, abs=1e-5)
        assert min(row) >= 0
    tokens = translator.target_subwords.decode(target_pieces[:-1]).split()
    text = translator.target_preprocessor.decode(tokens) if tokens else ""
    assert text == translator.translate([line])[0]
    assert translator.attention("  ") == ([], [], [])


def test_cli_exports_attention_as_json(trained_model: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mtcompare.cli import cli

    out = tmp_path / "attention.json"
    result = CliRunner().invoke(
        cli, ["attention", str(trained_model), "--line", "Tres cuatro cinco .", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text(encoding="utf-8"))
    assert len(record["weights"]) == len(record["target"])
    assert all(len(row) == len(record["source"]) for row in record["weights"])
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in record["weights"])


def test_the_example_config_file_lists_every_default() -> None:
    import yaml

    from mtcompare.config import build_config

    path = Path(__file__).resolve().parents[1] / "configs" / "nmt.yaml"
    assert build_config(NMTConfig, path) == NMTConfig()
    assert set(yaml.safe_load(path.read_text(encoding="utf-8"))) == set(
        NMTConfig.__dataclass_fields__
    )


def test_the_long_cpu_preset_loads() -> None:
    from mtcompare.config import build_config

    path = Path(__file__).resolve().parents[1] / "configs" / "nmt-long-cpu.yaml"
    config = build_config(NMTConfig, path)
    assert (config.vocab_size, config.joint_vocabulary, config.tie_target_embeddings) == (
        2000, True, True
    )


def test_untuned_weights_are_an_smt_option(trained_model: Path) -> None:
    with pytest.raises(MtcError, match="NMT model has no untuned weights"):
        load_translator(trained_model, tuned=False)
