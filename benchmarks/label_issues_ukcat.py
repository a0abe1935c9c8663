"""How well the label-issue list finds wrong human labels, on the bundled example.

Per seed: label noise is injected into the UK-CAT train split (examples/ukcat/train.csv): 5% of the assets get one
label swapped for a sibling, 5% lose one label (of those with two or more), 5% gain a code they did not have (drawn
from the codes the split uses). The charities coded twice in the sample are left clean. A version is trained on the
noisy split with the demo's taxonomy and facets and otherwise default settings, through the CLI (`train`, then
`label-issues --out`), and its flags are scored against the injected errors:
- precision@k: of the k most likely flags, those that name an injected error (the wrong code given, the code lost,
  or, for a swap, either); recall@k: the share of the noisy assets a top-k flag names; per kind of noise, the
  share of the top k it explains and the share of its assets found;
- asset precision@k: flags on an asset with injected noise at all (random flagging: the noisy share, ~0.15);
- the same ranked by the probability the human label is wrong alone (unweighted: no tie-break by level);
- the double-coded charities: how often a flag on one of them names a label the two coders disagreed on;
- with --natural, the same seed is also trained on the split without injected noise: a top-k flag that this
  training raises too is on a disagreement already in UK-CAT's own labels (a mistake the coders made, or a label
  the model cannot read from the text), which no ranking can tell apart from an injected one by the model's
  probabilities; `natural_share@k` is their share and `precision_without_natural@k` the precision among the rest.

    .venv/bin/python benchmarks/label_issues_ukcat.py [--seeds 1 2 3] [--budget 300] [--natural] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from automl.taxonomy_file import load_taxonomy  # noqa: E402

CLI = [sys.executable, "-m", "service.app.cli"]
EXAMPLE = ROOT / "examples" / "ukcat"
FACETS = {"population": ["BE"]}  # as the demo's config
KINDS = ("swap", "lose", "gain")
KS = (50, 100, 200)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def split_codes(value: str) -> list[str]:
    return [c.strip() for c in value.split(";") if c.strip()]


def second_codings(train_ids: set[str]) -> dict[str, list[str]]:
    """The later coding of the charities the sample holds twice (assets.csv keeps both rows)."""
    seen, second = set(), {}
    for row in read_rows(EXAMPLE / "assets.csv"):
        if row["id"] in seen and row["id"] in train_ids:
            second.setdefault(row["id"], split_codes(row["labels"]))
        seen.add(row["id"])
    return second


def inject(rows: list[dict], taxonomy, rate: float, seed: int, keep_clean: set[str]) -> dict[str, tuple]:
    """Changes rows' labels in place; returns asset id -> (kind, wrong codes given, right codes missing), both with
    ancestors."""
    rng = random.Random(seed)
    used = sorted({c for r in rows for c in split_codes(r["labels"]) if c in taxonomy})
    order = [r for r in rows if r["id"] not in keep_clean and split_codes(r["labels"])]
    rng.shuffle(order)
    quota = round(rate * len(rows))
    injected: dict[str, tuple] = {}
    counts = dict.fromkeys(KINDS, 0)
    for row in order:
        kind = next((k for k in KINDS if counts[k] < quota), None)
        if kind is None:
            break
        before = [c for c in split_codes(row["labels"]) if c in taxonomy]
        after = _noisy(kind, before, taxonomy, used, rng)
        if after is None:
            continue
        was, now = taxonomy.with_ancestors(before), taxonomy.with_ancestors(after)
        if was == now:
            continue
        row["labels"] = ";".join(after)
        injected[row["id"]] = (kind, now - was, was - now)
        counts[kind] += 1
    return injected


def _noisy(kind: str, codes: list[str], taxonomy, used: list[str], rng: random.Random) -> list[str] | None:
    if kind == "lose":
        if len(codes) < 2:
            return None
        gone = rng.choice(codes)
        return [c for c in codes if c != gone]
    if kind == "gain":
        have = taxonomy.with_ancestors(codes)
        return codes + [rng.choice([c for c in used if c not in have])]
    for old in rng.sample(codes, len(codes)):
        parent = taxonomy.nodes[old].parent
        siblings = [c for c in taxonomy.children.get(parent, []) if c not in codes
                    and taxonomy.nodes[c].facet == taxonomy.nodes[old].facet]
        if siblings:
            return [rng.choice(siblings) if c == old else c for c in codes]
    return None


def train_and_flag(state: Path, assets: Path, budget: int | None, seed: int) -> list[dict]:
    flags = state / "flags.csv"
    if not flags.exists():
        config = state / "config.toml"
        config.write_text("\n".join([
            'platform = "files"', f'state_dir = "{state}"', "[files]", f'assets = "{assets}"', "[taxonomy]",
            f'path = "{EXAMPLE / "taxonomy.csv"}"', 'default_facet = "subject"',
            "facet_roots = { population = [\"BE\"] }", "[model]", f"seed = {seed}",
            *([f"budget_seconds = {budget}"] if budget else [])]) + "\n", encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for args in (["train"], ["label-issues", "--out", str(flags)]):
            done = subprocess.run([*CLI, *args, "--config", str(config)], env=env, capture_output=True, text=True,
                                  cwd=ROOT)
            if done.returncode:
                sys.exit(done.stderr[-3000:])
    return read_rows(flags)


def hits(flag: dict, injected: dict[str, tuple]) -> str:
    """The kind of injected error the flag names ('' when none)."""
    found = injected.get(flag["asset_id"])
    if found is None:
        return ""
    kind, wrong, lost = found
    if flag["kind"] == "given":
        named = flag["code"] in wrong or (flag["suggestion"] and flag["suggestion"] in lost)
    else:
        named = flag["code"] in lost
    return kind if named else ""


def score(flags: list[dict], injected: dict[str, tuple], n_assets: int, natural: set[tuple] | None = None) -> dict:
    out: dict = {"flags": len(flags), "noisy_share": round(len(injected) / n_assets, 3)}
    per_kind = {k: sum(1 for v in injected.values() if v[0] == k) for k in KINDS}
    for k in KS:
        top = flags[:k]
        named = [hits(f, injected) for f in top]
        out[f"precision@{k}"] = round(sum(1 for n in named if n) / k, 3)
        if natural is not None:
            also = sum(1 for f, n in zip(top, named, strict=True) if not n and flag_key(f) in natural)
            out[f"natural_share@{k}"] = round(also / k, 3)
            out[f"precision_without_natural@{k}"] = round(sum(1 for n in named if n) / max(1, k - also), 3)
        found_assets = {f["asset_id"] for f, n in zip(top, named, strict=True) if n}
        out[f"recall@{k}"] = round(len(found_assets) / max(1, len(injected)), 3)
        out[f"asset_precision@{k}"] = round(sum(1 for f in top if f["asset_id"] in injected) / k, 3)
        for kind in KINDS:
            found = {f["asset_id"] for f, n in zip(top, named, strict=True) if n == kind}
            out[f"{kind}_share@{k}"] = round(sum(1 for n in named if n == kind) / k, 3)
            out[f"{kind}_recall@{k}"] = round(len(found) / max(1, per_kind[kind]), 3)
    return out


def flag_key(flag: dict) -> tuple[str, str, str]:
    return flag["asset_id"], flag["kind"], flag["code"]


def unweighted(flags: list[dict]) -> list[dict]:
    """The flags ranked by the probability that the human label is wrong alone."""
    def chance(f: dict) -> float:
        p, instead = float(f["probability"]), float(f["suggestion_probability"])
        return 1.0 - p * (1.0 - instead) if f["kind"] == "given" else p
    return sorted(flags, key=lambda f: -chance(f))


def double_coded(flags: list[dict], first: dict[str, list[str]], second: dict[str, list[str]], taxonomy) -> dict:
    disagree = {}
    for asset_id, codes in second.items():
        a = taxonomy.with_ancestors(c for c in first[asset_id] if c in taxonomy)
        b = taxonomy.with_ancestors(c for c in codes if c in taxonomy)
        if a != b:
            disagree[asset_id] = a ^ b
    on = [f for f in flags if f["asset_id"] in disagree]
    named = [f for f in on if f["code"] in disagree[f["asset_id"]] or f["suggestion"] in disagree[f["asset_id"]]]
    return {"coded_twice": len(second), "disagreeing": len(disagree),
            "flags_on_them": len(on), "flags_on_a_disagreed_label": len(named),
            "share_on_a_disagreed_label": round(len(named) / len(on), 3) if on else None,
            "assets_flagged_on_a_disagreed_label": len({f["asset_id"] for f in named})}


def run(seed: int, args) -> dict:
    taxonomy = load_taxonomy(EXAMPLE / "taxonomy.csv", FACETS, "subject")
    rows = read_rows(EXAMPLE / "train.csv")
    first = {r["id"]: split_codes(r["labels"]) for r in rows}
    second = second_codings(set(first))
    injected = inject(rows, taxonomy, args.rate, seed, set(second))
    state = args.out / f"seed{seed}"
    state.mkdir(parents=True, exist_ok=True)
    assets = state / "noisy_train.csv"
    with assets.open("w", encoding="utf-8", newline="") as f:
        out = csv.DictWriter(f, ["id", "text", "labels"])
        out.writeheader()
        out.writerows(rows)
    flags = train_and_flag(state, assets, args.budget, seed)
    natural = None
    if args.natural:  # the same training without the injected noise: the flags UK-CAT's own labels raise
        clean = args.out / f"seed{seed}-clean"
        clean.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLE / "train.csv", clean / "train.csv")
        natural = {flag_key(f) for f in train_and_flag(clean, clean / "train.csv", args.budget, seed)}
    return {"seed": seed, "injected": {k: sum(1 for v in injected.values() if v[0] == k) for k in KINDS},
            "ranked": score(flags, injected, len(rows), natural),
            "unweighted": score(unweighted(flags), injected, len(rows), natural),
            "double_coded": double_coded(flags, first, second, taxonomy)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--budget", type=int, default=None, help="seconds of search (default: the default, 300)")
    parser.add_argument("--rate", type=float, default=0.05, help="share of assets per kind of noise")
    parser.add_argument("--natural", action="store_true",
                        help="also train without the injected noise, to tell the data's own disagreements apart")
    parser.add_argument("--out", type=Path, default=ROOT / "state-benchmark" / "label-issues")
    args = parser.parse_args()
    args.out = args.out.resolve()
    runs = [run(seed, args) for seed in args.seeds]
    summary = {"runs": runs, "median": {}}
    for part in ("ranked", "unweighted"):
        summary["median"][part] = {key: round(statistics.median(r[part][key] for r in runs), 3)
                                   for key in runs[0][part]}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
