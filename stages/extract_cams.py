"""Extract class activation maps into one HDF5 file: python -m stages.extract_cams ..."""
from pipeline.cams import extract
from pipeline.data.voc import VOCDataset
from pipeline.device import resolve_device, set_threads
from pipeline.models.classifier import load_classifier
from stages._args import add_dataset, add_runtime, json_arg, parser

p = parser(__doc__)
add_dataset(p)
add_runtime(p)
p.add_argument("--classifier", required=True, help="checkpoint written by train_classifier")
p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
p.add_argument("--method", default="cam", choices=["cam"])
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the cams config section")
p.add_argument("--workers", type=int, default=1)
p.add_argument("--out", required=True, help="HDF5 output")
args = p.parse_args()

set_threads(args.threads)
voc = VOCDataset(args.root, args.classes, args.split)
voc.check(masks=False)
model, meta = load_classifier(args.classifier, args.backbone)
if meta["classes"] != args.classes:
    raise SystemExit(f"{args.classifier} was trained on classes {meta['classes']}, not {args.classes}")
done = extract(model, meta, voc, args.out, args.cfg["scales"], args.cfg["flip"],
               resolve_device(args.device), args.workers)
print(f"extract_cams: {args.method} maps of {len(voc)} images ({done} computed now) -> {args.out}")
