"""The benchmark report: ``results.json`` for machines, ``report.md`` for people.

Both are written from one results record, so they never disagree. The
Markdown report has a table with one row per system (BLEU and chrF with
their sacreBLEU signatures, training time, translation speed, model size)
and ten test segments side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from mtcompare.fileio import write_text
from mtcompare.progress import format_duration

EXAMPLE_COUNT = 10


def pick_examples(count: int, wanted: int = EXAMPLE_COUNT) -> list[int]:
    """Indices spread evenly over a test set, the same on every run."""
    if count <= wanted:
        return list(range(count))
    return [round(index * (count - 1) / (wanted - 1)) for index in range(wanted)]


def write_report(run_dir: Path, results: dict) -> None:
    """Write ``results.json`` and ``report.md`` into ``run_dir``."""
    write_text(run_dir / "results.json", json.dumps(results, indent=2, ensure_ascii=False)
               + "\n")
    write_text(run_dir / "report.md", render_markdown(results))


def render_markdown(results: dict) -> str:
    lines = [f"# mtcompare benchmark: {results['corpus']}", ""]
    lines += _corpus_section(results)
    lines += ["## Results on the test set", ""]
    lines += _results_table(results["systems"])
    lines += ["", "Signatures:", ""]
    signatures = next(iter(results["systems"].values()))["signatures"]
    lines += [f"- {metric}: `{signature}`" for metric, signature in signatures.items()]
    lines += _training_section(results["systems"])
    lines += ["", "## Ten test segments side by side", ""]
    lines += _examples(results["examples"], [name for name in results["systems"]
                                              if name != "copy-source"])
    lines += ["", "## How this was run", "", f"    {results['command']}", ""]
    lines += [f"- {key}: {value}" for key, value in results["environment"].items()]
    return "\n".join(lines) + "\n"


def summary_table(results: dict) -> str:
    """The results table as plain text, for the terminal."""
    header = f"{'system':<12} {'BLEU':>6} {'chrF':>6} {'train':>9} {'sent/s':>8} {'size':>9}"
    rows = [header, "-" * len(header)]
    for name, system in results["systems"].items():
        rows.append(
            f"{name:<12} {system['BLEU']:>6.2f} {system['chrF']:>6.2f} "
            f"{_duration(system.get('train_seconds')):>9} "
            f"{_rate(system.get('sentences_per_second')):>8} "
            f"{_size(system.get('model_bytes')):>9}"
        )
    return "\n".join(rows)


def _corpus_section(results: dict) -> list[str]:
    counts = results["counts"]
    before = results.get("counts_before_cleaning", counts)
    dropped = ", ".join(f"{reason}: {count:,}" for reason, count in results["dropped"].items())
    used = (f", of which the first {counts['train']:,} were used (--train-size)"
            if results.get("train_size") else "")
    return [
        f"Corpus `{results['corpus']}`, {results['src_lang']} → {results['tgt_lang']}: "
        f"{before['train']:,} training pairs, cleaning dropped "
        f"{sum(results['dropped'].values()):,} ({dropped}){used}; "
        f"{counts['dev']:,} dev, {counts['test']:,} test (never filtered). Case handling: "
        f"{results['case']} (shared by both systems; output is recased and "
        "detokenised before scoring).",
        "",
    ]


def _results_table(systems: dict) -> list[str]:
    rows = ["| system | BLEU | chrF | training time | translation speed | model size |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, system in systems.items():
        rows.append(
            f"| {name} | {system['BLEU']:.2f} | {system['chrF']:.2f} | "
            f"{_duration(system.get('train_seconds'))} | "
            f"{_rate(system.get('sentences_per_second'), ' sent/s')} | "
            f"{_size(system.get('model_bytes'))} |"
        )
    return rows


def _training_section(systems: dict) -> list[str]:
    """Training time per stage, and what tuning did, for the systems that say."""
    lines: list[str] = []
    for name, system in systems.items():
        stages = system.get("stage_seconds")
        if stages:
            parts = ", ".join(f"{stage.replace('_', ' ')} {_duration(value)}"
                              for stage, value in stages.items())
            lines.append(f"- {name} training stages: {parts}.")
        tuning = system.get("tuning")
        if tuning:
            lines.append(
                f"- {name} tuning (MERT, {tuning['iterations']} iterations on "
                f"{tuning['dev_sentences']:,} dev sentences): tokenised dev BLEU "
                f"{tuning['dev_bleu_untuned']:.2f} untuned, {tuning['dev_bleu']:.2f} tuned "
                f"(iteration {tuning['best_iteration']}; stopped: {tuning['stop_reason']})."
            )
    return ["", "## Training", "", *lines] if lines else []


def _examples(examples: Sequence[dict], system_names: Sequence[str]) -> list[str]:
    lines = []
    for example in examples:
        title = example.get("ref") or f"segment {example['index'] + 1}"
        lines += [f"**{title}**", ""]
        lines += [f"- source: {_escape(example['source'])}",
                  f"- reference: {_escape(example['reference'])}"]
        lines += [f"- {name}: {_escape(example[name])}" for name in system_names]
        lines.append("")
    return lines


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _duration(seconds: float | None) -> str:
    return "–" if seconds is None else format_duration(seconds)


def _rate(rate: float | None, unit: str = "") -> str:
    return "–" if rate is None else f"{rate:,.1f}{unit}"


def _size(size: int | None) -> str:
    if size is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB"):  # decimal units, as disk tools report them
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return ""
