"""The expected time of each heavy stage of a dataset's run on the device at hand, from measured
rates (pipeline/core/estimate.py): python -m stages.estimate ... or `snakemake results/{dataset}/estimate.json`."""
import torch

from pipeline.core.estimate import estimate, load_rates, rates_file, split_sizes, table
from stages._args import json_arg, parser, write_json


def device_kind(device: str) -> str:
    """'cuda' when the run will use a GPU (named, or `auto` on a machine that has one), else 'cpu'.
    A named cuda needs no GPU here: a login node estimates its cluster's GPU jobs."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", required=True, help="dataset name (for messages)")
    p.add_argument("--dataset-config", required=True, type=json_arg, help="JSON: the dataset's entry of config.yaml")
    p.add_argument("--sections", required=True, type=json_arg,
                   help="JSON: the dataset's merged config sections (classifier, vit_classifier, cams, affinity, "
                        "random_walk, refine, segmentation)")
    p.add_argument("--root", default=None, help="dataset root (a demo not generated yet is described by its generator)")
    p.add_argument("--coco-cache", default=None, help="a COCO-format dataset's results directory")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="the jobs' threads (config threads): a CPU job's "
                   "wall time is its CPU time over them")
    p.add_argument("--out", required=True, help="JSON output: each job's work and expected seconds")
    args = p.parse_args(argv)

    kind = device_kind(args.device)
    rates = load_rates(kind)
    sizes = split_sizes(args.dataset_config, args.root, args.coco_cache)
    result = {"dataset": args.dataset, "device": kind, "splits": {s: {"images": n, "megapixels": mp}
                                                                  for s, (n, mp) in sizes.items()}}
    if rates is None:
        print(f"estimate: no rates measured for device '{kind}' ({rates_file(kind)} is missing); measure them with "
              f"python benchmarks/bench_throughput.py --device {kind} --out {rates_file(kind)}")
        result.update(rates=None, jobs=[])
    else:
        rows = estimate(args.sections, args.dataset_config, sizes, rates, args.threads)
        result.update(rates={k: rates[k] for k in ("device_name", "amp", "sizes", "threads", "measured", "command")},
                      jobs=rows)
        print(f"estimate for {args.dataset} on {kind} ({', '.join(f'{s}: {n} images of {mp:.3f} MP' for s, (n, mp) in sizes.items())})")
        print(f"rates of {rates['device_name']} with {rates['threads']} thread(s), amp {rates['amp']}, "
              f"{rates['sizes']} sizes, measured {rates['measured']} ({rates_file(kind).name}):")
        print(table(rows))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
