"""Rankings of the label-issue list tried beside the service's, on the noise of benchmarks/label_issues_ukcat.py.

Per seed, the same noisy UK-CAT train split; a model fitted in this process as the service fits it (the promotion
gate's slice of 15% kept out and judged by the model's predictions, the rest out of fold; default settings but the
budget), then precision@100 (flags naming an injected error) of:
- without neighbours: `find_label_issues` on the stacked evidence alone (the other labels' agreement as the service
  weighs it);
- per part: the same, each label's evidence fitted on the out-of-fold rows and on the slice apart, then stacked;
- n neighbours, weight w, agreement a: the service's list (`Evidence.with_neighbours`: the share of each text's n
  most similar labelled texts, by word TF-IDF cosine, given each code; the service's n: 10) with NEIGHBOUR_WEIGHT = w
  (its: 1) and AGREEMENT_WEIGHT = a (the weight of the model's reading of the text's other labels; its: 0.25).

    .venv/bin/python benchmarks/label_issues_variants.py [--seeds 1 2 3] [--budget 60] [--folds 5] [--weights 0.5 1 2]
        [--neighbours 10] [--agreement 0 0.25]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import label_issues_ukcat as noise  # noqa: E402

from automl import label_issues  # noqa: E402
from automl.label_issues import Evidence, LabelIssue, find_label_issues  # noqa: E402
from automl.model import PreAnnotator  # noqa: E402
from automl.settings import ModelSettings  # noqa: E402
from automl.taxonomy_file import load_taxonomy  # noqa: E402
from service.quality.promotion import in_holdout  # noqa: E402

SERVICE = (label_issues.NEIGHBOURS, label_issues.NEIGHBOUR_WEIGHT, label_issues.AGREEMENT_WEIGHT)


def precision(issues: list[LabelIssue], ids: list[str], injected: dict, k: int = 100) -> float:
    flags = [{"asset_id": ids[i.row], "kind": i.kind, "code": i.code, "suggestion": i.suggestion} for i in issues[:k]]
    return sum(1 for f in flags if noise.hits(f, injected)) / k


def run(seed: int, args) -> dict[str, float]:
    # The service's weights again: the last seed's variants changed them.
    label_issues.NEIGHBOURS, label_issues.NEIGHBOUR_WEIGHT, label_issues.AGREEMENT_WEIGHT = SERVICE
    taxonomy = load_taxonomy(noise.EXAMPLE / "taxonomy.csv", noise.FACETS, "subject")
    rows = noise.read_rows(noise.EXAMPLE / "train.csv")
    first = {r["id"]: noise.split_codes(r["labels"]) for r in rows}
    injected = noise.inject(rows, taxonomy, 0.05, seed, set(noise.second_codings(set(first))))
    seen: set[str] = set()
    unique = [r for r in rows if not (r["id"] in seen or seen.add(r["id"]))]  # the service keeps the first
    fitted = [r for r in unique if not in_holdout(r["id"], 0.15)]
    held = [r for r in unique if in_holdout(r["id"], 0.15)]

    def labels(part):
        return [{c for c in noise.split_codes(r["labels"]) if c in taxonomy} for r in part]

    model = PreAnnotator(taxonomy, ModelSettings(budget_seconds=args.budget, seed=seed, cv_folds=args.folds))
    model.fit([r["text"] for r in fitted], labels(fitted))
    held_evidence = model.evidence([r["text"] for r in held], labels(held))
    evidence = {f: Evidence.stacked([model.evidence_[f], held_evidence[f]]) for f in model.evidence_}
    ids = [r["id"] for r in fitted + held]
    out = {"without neighbours": precision(find_label_issues(taxonomy, evidence), ids, injected)}

    def apart(ev: Evidence) -> Evidence:
        return Evidence(ev.codes, ev.per_label(), ev.given, ev.judged, None, ev.rule_hits)

    per_part = {f: Evidence.stacked([apart(model.evidence_[f]), apart(held_evidence[f])]) for f in model.evidence_}
    out["per part"] = precision(find_label_issues(taxonomy, per_part), ids, injected)
    vectors = model.features_.vectors([r["text"] for r in fitted + held])
    for count in args.neighbours:
        label_issues.NEIGHBOURS = count
        near = {f: ev.with_neighbours(label_issues.Neighbours.of(vectors)) for f, ev in evidence.items()}
        for weight in args.weights:
            label_issues.NEIGHBOUR_WEIGHT = weight
            for agreement in args.agreement:
                label_issues.AGREEMENT_WEIGHT = agreement
                out[f"{count} neighbours, weight {weight:g}, agreement {agreement:g}"] = precision(
                    find_label_issues(taxonomy, near), ids, injected)
    print(seed, out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[10], help="how many (the service's: 10)")
    parser.add_argument("--agreement", type=float, nargs="+", default=[0.0, 0.25],
                        help="weights of the other labels' agreement (the service's: 0.25)")
    args = parser.parse_args()
    runs = [run(seed, args) for seed in args.seeds]
    for name in runs[0]:
        values = [r[name] for r in runs]
        each = " / ".join(f"{v:.2f}" for v in values)
        print(f"precision@100 {name:40s} {each}  median {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
