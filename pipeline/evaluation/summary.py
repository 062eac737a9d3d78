"""One comparison table of the CAM methods run on the same classifier."""
from __future__ import annotations


def method_row(seeds: dict, boxes: dict, timing: dict) -> dict:
    best = seeds["best_on_curve"]
    at_best = next(row for row in seeds["curve"] if row["threshold"] == best["threshold"])
    return {
        "method": seeds["method"],
        "seed_miou": seeds["miou"], "threshold": seeds["threshold"],
        "fg_precision": seeds["fg_precision"], "fg_recall": seeds["fg_recall"],
        "best_seed_miou": best["miou"], "best_threshold": best["threshold"],
        "fg_precision_at_best": at_best["fg_precision"], "fg_recall_at_best": at_best["fg_recall"],
        "corloc": boxes["corloc"], "maxboxacc": boxes["maxboxacc"],
        "seconds_per_image": timing["seconds_per_image"],
    }


def format_table(rows: list[dict]) -> str:
    head = f"{'method':<10} {'mIoU':>6} {'best':>6} {'@thr':>5} {'prec':>5} {'rec':>5} {'CorLoc':>6} {'MaxBox':>6} {'s/img':>6}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['method']:<10} {r['seed_miou']:6.3f} {r['best_seed_miou']:6.3f} {r['best_threshold']:5.2f} "
                     f"{r['fg_precision_at_best']:5.2f} {r['fg_recall_at_best']:5.2f} {r['corloc']:6.3f} "
                     f"{r['maxboxacc']:6.3f} {(r['seconds_per_image'] or 0):6.3f}")
    return "\n".join(lines)
