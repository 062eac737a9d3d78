"""Train the multi-label classifier: python -m stages.train_classifier --root R --classes JSON ..."""
from pipeline.classifier.train import train
from stages._args import (add_dataset, add_runtime, add_training, dataset, on_device, parser,
                          start_training, write_json)
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p, split_flags=("--train-split", "--val-split"))
    add_runtime(p)
    add_training(p, "train_classifier", "JSON with val mAP and the loss curve", defaults="classifier")
    args = p.parse_args(argv)

    cfg = start_training(args)
    train_voc = dataset(args, args.train_split)
    val_voc = dataset(args, args.val_split)
    train_voc.check(masks=False)
    val_voc.check(masks=False)
    with on_device(args) as device:
        result = train(train_voc, val_voc, cfg, args.out, device, args.seed)
    write_json(args.report, result)
    print(f"train_classifier: val mAP {result['val_map']:.4f} on {args.val_split} -> {args.out}")


if __name__ == "__main__":
    main()
