"""Train NMT variants for a fixed CPU budget each and compare their test BLEU.

    python bench/nmt_ablation.py PREPARED OUT --minutes 15 --parallel 2 \
        baseline "vocab4k=vocab_size=4000" "tied=tie_target_embeddings=true"

Each variant is ``name`` (the defaults) or ``name=KEY=VALUE,KEY=VALUE``. Every
variant trains with one torch thread, ``--parallel`` of them at once, so two
variants on a 2-core machine share it evenly; then each translates the test
set (beam 5, one thread) and is scored with sacreBLEU against the raw
references. Prints one table row per variant: steps, target tokens per
second, best dev BLEU (greedy, tokenised, as training logs it), test BLEU and
chrF, and the seconds decoding took. A variant whose model already exists is
not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(text) for text in args.variants]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda v: run_variant(args, *v), variants))
    print(f"\n{len(rows)} variants, {args.minutes:g} CPU minutes each, one thread, "
          f"{args.parallel} at a time; test BLEU with beam 5")
    print("| variant | settings | steps | tgt tok/s | best dev BLEU | test BLEU | chrF |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| {name} | {settings} | {steps} | {rate} | {dev:.2f} | {bleu:.2f} | "
              "{chrf:.2f} |".format(**row))


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, settings = text.partition("=")
    return name, [item for item in settings.split(",") if item]


def run_variant(args: argparse.Namespace, name: str, settings: list[str]) -> dict:
    model = args.out / name
    log = args.out / f"{name}.log"
    if not (model / "model.json").is_file():
        command = [sys.executable, "-m", "mtcompare", "train", "nmt", str(args.prepared),
                   "--out", str(model), "--max-minutes", str(args.minutes),
                   "--threads", "1"]
        for item in settings:
            command += ["--set", item]
        with open(log, "a", encoding="utf-8") as stream:
            subprocess.run(command, check=True, stdout=stream, stderr=stream)
    info = json.loads((model / "model.json").read_text(encoding="utf-8"))
    manifest = json.loads((args.prepared / "manifest.json").read_text(encoding="utf-8"))
    source = args.prepared / f"test.{manifest['src_lang']}"
    reference = args.prepared / f"test.{manifest['tgt_lang']}"
    output = args.out / f"{name}.test.{manifest['tgt_lang']}"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "mtcompare", "-q", "translate", str(model),
                    "-i", str(source), "-o", str(output), "--threads", "1"], check=True)
    seconds = time.monotonic() - started
    scores = subprocess.run([sys.executable, "-m", "mtcompare", "evaluate", "--ref",
                             str(reference), str(output)], check=True,
                            capture_output=True, text=True).stdout
    found = dict(re.findall(r"\t(BLEU|chrF)\t([\d.]+)\t", scores))
    rates = [float(rate.replace(",", "")) for rate in
             re.findall(r"([\d,]+) (?:tgt |target )?tokens/s", log.read_text(encoding="utf-8"))]
    return {
        "name": name,
        "settings": ", ".join(settings) or "defaults",
        "steps": info.get("steps"),
        "rate": f"{sorted(rates)[len(rates) // 2]:,.0f}" if rates else "?",
        "dev": info.get("best_dev_bleu", 0.0),
        "bleu": float(found.get("BLEU", 0.0)),
        "chrf": float(found.get("chrF", 0.0)),
        "decode_seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    main()
