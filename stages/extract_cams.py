"""Extract class activation maps into one HDF5 file: python -m stages.extract_cams ..."""
from pipeline.cams import ALL_METHODS, extract
from pipeline.data.voc import VOCDataset
from pipeline.device import resolve_device, set_threads
from pipeline.models.classifier import load_classifier
from stages._args import add_dataset, add_runtime, json_arg, parser, write_json

p = parser(__doc__)
add_dataset(p)
add_runtime(p)
p.add_argument("--classifier", required=True, help="checkpoint written by train_classifier")
p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
p.add_argument("--method", default="cam", choices=ALL_METHODS)
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the cams config section")
p.add_argument("--workers", type=int, default=1)
p.add_argument("--out", required=True, help="HDF5 output")
p.add_argument("--report", required=True, help="JSON with the timing")
args = p.parse_args()

set_threads(args.threads)
voc = VOCDataset(args.root, args.classes, args.split)
voc.check(masks=False)
model, meta = load_classifier(args.classifier, args.backbone)
if meta["classes"] != args.classes:
    raise SystemExit(f"{args.classifier} was trained on classes {meta['classes']}, not {args.classes}")
result = extract(model, meta, voc, args.out, args.cfg["scales"], args.cfg["flip"], resolve_device(args.device),
                 args.method, args.cfg["fullycam_levels"], args.workers)
write_json(args.report, {"method": args.method, "split": args.split, **result})
print(f"extract_cams: {args.method} maps of {len(voc)} images ({result['computed_now']} computed now, "
      f"{result['seconds_per_image'] or 0:.3f} s per image) -> {args.out}")
