"""Do two results directories hold the same run? python tests/slurm/compare_results.py A B

Compares every HDF5 artifact of A with B (same keys, arrays, attributes and parameters), the
checkpoints' tensors, and the scores of every JSON report; prints one line per file and exits 1
on the first difference in content. Timings and shard counts may differ."""
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

VARIABLE = {"seconds_per_image", "computed_now", "shards", "seconds", "history", "model"}


def same_h5(a: Path, b: Path) -> str | None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        if sorted(fa) != sorted(fb) or fa.attrs.get("meta") != fb.attrs.get("meta"):
            return "keys or parameters differ"
        for key in fa:
            if not np.array_equal(fa[key][()], fb[key][()]):
                return f"values of {key} differ"
            if {k: np.asarray(v).tolist() for k, v in fa[key].attrs.items()} != \
                    {k: np.asarray(v).tolist() for k, v in fb[key].attrs.items()}:
                return f"attributes of {key} differ"
    return None


def same_checkpoint(a: Path, b: Path) -> str | None:
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    if sa.keys() != sb.keys():
        return "parameter names differ"
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    return f"{len(bad)} tensors differ, e.g. {bad[0]}" if bad else None


def same_report(a: Path, b: Path) -> str | None:
    ra, rb = (json.loads(p.read_text()) for p in (a, b))
    if not isinstance(ra, dict):
        return None if ra == rb else "content differs"
    keys = (set(ra) | set(rb)) - VARIABLE
    bad = sorted(k for k in keys if ra.get(k) != rb.get(k))
    return f"{bad} differ" if bad else None


def main(a: str, b: str) -> int:
    a, b = Path(a), Path(b)
    checks = {".h5": same_h5, ".pt": same_checkpoint, ".json": same_report}
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in checks and "logs" not in p.parts
                   and not p.name.endswith(".partial"))
    failed = 0
    for rel in files:
        if not (b / rel).exists():
            print(f"MISSING {rel} in {b}")
            failed += 1
            continue
        problem = checks[rel.suffix](a / rel, b / rel)
        print(f"{'DIFFERS' if problem else 'same   '} {rel}" + (f": {problem}" if problem else ""))
        failed += problem is not None
    print(f"{len(files) - failed} of {len(files)} files the same")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
