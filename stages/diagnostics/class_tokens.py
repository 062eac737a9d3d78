"""Attention statistics and each part's seed curve on a ViT with one class token per class
(docs/transformers.md): python -m stages.diagnostics.class_tokens ..."""
from pipeline.cams.seeds import sweep_values
from pipeline.diagnostics.class_tokens import diagnose_class_tokens
from stages._args import on_device, write_json
from stages._main import stage_main
from stages.diagnostics import classifier_diagnosis, print_curves


@stage_main
def main(argv=None) -> None:
    args, voc, model, meta = classifier_diagnosis(__doc__, argv, "classifier_mct.pt written by train_classifier",
                                                  scales=[1.0], scales_help="default: MCTformer's scale 1 (+ flip)")
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
    print_curves(result["curves"], 20)


if __name__ == "__main__":
    main()
