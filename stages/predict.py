"""Predict label maps of a split with a trained segmentation network: python -m stages.predict ..."""
from pipeline.data.voc import VOCDataset
from pipeline.device import resolve_device, set_threads
from pipeline.models.segnet import load_segnet
from pipeline.predict import predict
from stages._args import add_dataset, add_runtime, json_arg, parser, write_json

p = parser(__doc__)
add_dataset(p)
add_runtime(p)
p.add_argument("--model", required=True, help="checkpoint written by stages.train_segmentation")
p.add_argument("--backbone", required=True, help="segmentation.backbone from config (checked against the checkpoint)")
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the segmentation test settings")
p.add_argument("--out", required=True, help="HDF5 output (uint8 label maps)")
p.add_argument("--report", required=True, help="JSON with the timing")
args = p.parse_args()

set_threads(args.threads)
voc = VOCDataset(args.root, args.classes, args.split)
voc.check(masks=False)
model, meta = load_segnet(args.model, args.backbone)
if meta["classes"] != voc.classes:
    raise SystemExit(f"{args.model} was trained on classes {meta['classes']}, this dataset has {voc.classes}")
result = predict(model, meta, voc, args.out, args.cfg, resolve_device(args.device))
write_json(args.report, {"model": args.model, **result})
print(f"predict: {result['images']} images of {args.split} -> {args.out}")
