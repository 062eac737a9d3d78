"""Attention statistics and attnfusion's seed curves with and without refinement (docs/diagnostics.md):
python -m stages.diagnostics.attnfusion ..."""
from pipeline.cams.seeds import sweep_values
from pipeline.diagnostics.attnfusion import diagnose
from stages._args import on_device, write_json
from stages._main import stage_main
from stages.diagnostics import classifier_diagnosis, print_curves


@stage_main
def main(argv=None) -> None:
    args, voc, model, meta = classifier_diagnosis(__doc__, argv, "ViT checkpoint written by train_classifier")
    if "start_block" not in meta:
        raise SystemExit(f"{args.classifier} is not a ViT classifier (no start_block in its metadata)")
    with on_device(args) as device:
        result = diagnose(model, meta, voc, args.scales, args.flip, sweep_values(*args.sweep), device)
    write_json(args.out, result)
    print(f"diagnose_attnfusion: {result['images']} images of {args.split}")
    print("block  entropy  row spread")
    for b, row in enumerate(result["blocks"]):
        print(f"{b:5d}  {row['entropy']:.3f}    {row['row_spread']:.3f}")
    print_curves(result["curves"], 20)
    r = result["refined_vs_unrefined"]
    print(f"refined vs unrefined maps: Pearson r mean {r['mean_r']:.3f} over {r['class_maps']} class maps, "
          f"negative in {r['negative_fraction']:.2f}")


if __name__ == "__main__":
    main()
