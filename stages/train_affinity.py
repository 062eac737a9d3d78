"""Train AffinityNet on the affinity labels: python -m stages.train_affinity ..."""
from pipeline.affinity.train import train
from pipeline.core.store import ArtifactReader
from stages._args import (add_dataset, add_runtime, add_training, dataset, on_device, parser,
                          start_training, write_json)
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--labels", required=True, help="HDF5 written by stages.affinity_labels")
    add_training(p, "train_affinity", "JSON with the loss curve")
    args = p.parse_args(argv)

    cfg = start_training(args)
    voc = dataset(args, args.split)
    voc.check(masks=False)
    with on_device(args) as device:
        result = train(voc, ArtifactReader(args.labels), cfg, args.out, device, args.seed)
    write_json(args.report, result)
    print(f"train_affinity: {result['images']} images, final loss {result['history'][-1]['loss']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
