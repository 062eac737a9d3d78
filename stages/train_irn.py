"""Train IRN's boundary network on the IR labels: python -m stages.train_irn ..."""
from pipeline.affinity.irn import train_irn
from pipeline.core.store import ArtifactReader
from stages._args import (add_dataset, add_runtime, add_training, dataset, on_device, parser,
                          start_training, write_json)
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--labels", required=True, help="HDF5 written by stages.ir_labels")
    add_training(p, "train_irn", "JSON with the loss curve")
    args = p.parse_args(argv)

    cfg = start_training(args)
    voc = dataset(args, args.split)
    voc.check(masks=False)
    with on_device(args) as device:
        result = train_irn(voc, ArtifactReader(args.labels), cfg, args.out, device, args.seed)
    write_json(args.report, result)
    print(f"train_irn: {result['images']} images, final loss {result['history'][-1]['loss']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
