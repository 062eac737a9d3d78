"""Train the segmentation network on pseudo-labels or on the ground truth: python -m stages.train_segmentation ..."""
from pipeline.core.store import ArtifactReader
from pipeline.segmentation.train import train
from stages._args import (add_dataset, add_runtime, add_training, dataset, on_device, parser,
                          start_training, write_json)
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--labels", required=True,
                   help="HDF5 of pseudo-labels (stages.refine), or 'gt' for the split's ground-truth masks")
    add_training(p, "train_segmentation", "JSON with the loss curve")
    args = p.parse_args(argv)

    cfg = start_training(args)
    voc = dataset(args, args.split)
    labels_file = None if args.labels == "gt" else args.labels
    voc.check(masks=labels_file is None)
    label_of = voc.load_mask if labels_file is None else ArtifactReader(labels_file).__getitem__
    with on_device(args) as device:
        result = train(voc, label_of, labels_file, cfg, args.out, device, args.seed)
    write_json(args.report, result)
    print(f"train_segmentation: {result['images']} images of {args.split} with {result['labels']}, final loss "
          f"{result['history'][-1]['loss']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
