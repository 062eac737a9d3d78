"""Attention statistics and each part's seed curve on a ViT with one class token per class
(docs/transformers.md): python -m stages.diagnostics.class_tokens ..."""
from pipeline.diagnostics.class_tokens import diagnose_class_tokens
from pipeline.cams.seeds import sweep_values
from pipeline.core.device import set_threads
from pipeline.models.classifier import load_classifier
from stages._args import add_dataset, add_runtime, dataset, json_arg, on_device, parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    add_dataset(p)
    add_runtime(p)
    p.add_argument("--classifier", required=True, help="classifier_mct.pt written by train_classifier")
    p.add_argument("--images", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--scales", type=json_arg, default=[1.0], help="default: MCTformer's scale 1 (+ flip)")
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--sweep", type=json_arg, default=[0.05, 0.60, 0.05], help="start, stop, step")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)

    set_threads(args.threads)
    voc = dataset(args, args.split)
    voc = voc.subset(voc.ids[:args.images]) if args.images else voc
    voc.check(masks=True)
    model, meta = load_classifier(args.classifier)
    if meta.get("class_tokens") != "per_class":
        raise SystemExit(f"{args.classifier} is not a ViT with one class token per class "
                         f"(class_tokens {meta.get('class_tokens', 'one')!r} in its metadata)")
    with on_device(args) as device:
        result = diagnose_class_tokens(model, meta, voc, args.scales, args.flip, sweep_values(*args.sweep), device)
    write_json(args.out, result)
    print(f"diagnose_class_tokens: {result['images']} images of {args.split}")
    print("block  class-row entropy  class-row r  patch entropy  patch row spread")
    for b, row in enumerate(result["blocks"]):
        print(f"{b:5d}  {row['class_entropy']:.3f}              {row['class_row_r']:+.3f}       "
              f"{row['entropy']:.3f}          {row['row_spread']:.3f}")
    for name, curve in result["curves"].items():
        best = max(curve, key=lambda r: r["miou"])
        print(f"{name:20s} " + " ".join(f"{r['miou']:.3f}" for r in curve) + f"  best {best['miou']:.3f} at {best['threshold']}")


if __name__ == "__main__":
    main()
