"""ReCAM's extra training step on the trained classifier: python -m stages.train_recam --root R --classes JSON ..."""
from pipeline.classifier.recam import train_recam
from stages._args import (add_dataset, add_runtime, add_training, dataset, on_device, parser,
                          start_training, write_json)
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p, split_flags=("--train-split", "--val-split"))
    add_runtime(p)
    p.add_argument("--classifier", required=True, help="the CNN classifier checkpoint that train_classifier wrote")
    add_training(p, "train_recam", "JSON with val mAP, the loss curve and the last epoch's losses")
    args = p.parse_args(argv)

    cfg = start_training(args)
    train_voc = dataset(args, args.train_split)
    val_voc = dataset(args, args.val_split)
    train_voc.check(masks=False)
    val_voc.check(masks=False)
    with on_device(args) as device:
        result = train_recam(train_voc, val_voc, cfg, args.classifier, args.out, device, args.seed)
    write_json(args.report, result)
    print(f"train_recam: val mAP {result['val_map']:.4f} on {args.val_split} (classifier: "
          f"{result['classifier_val_map']:.4f}) -> {args.out}")


if __name__ == "__main__":
    main()
