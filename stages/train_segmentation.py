"""Train the segmentation network on pseudo-labels or on the ground truth: python -m stages.train_segmentation ..."""
from pipeline.data.voc import VOCDataset
from pipeline.device import resolve_device, set_threads
from pipeline.store import ArtifactReader
from pipeline.train_segmentation import train
from stages._args import add_dataset, add_runtime, json_arg, parser, write_json

p = parser(__doc__)
add_dataset(p)
add_runtime(p)
p.add_argument("--labels", required=True,
               help="HDF5 of pseudo-labels (stages.refine), or 'gt' for the split's ground-truth masks")
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the segmentation config section")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True, help="checkpoint path (.pt)")
p.add_argument("--report", required=True, help="JSON with the loss curve")
args = p.parse_args()

set_threads(args.threads)
voc = VOCDataset(args.root, args.classes, args.split)
if args.labels == "gt":
    voc.check(masks=True)
    label_of, name, labels_file = voc.load_mask, "ground truth", None
else:
    voc.check(masks=False)
    label_of, name, labels_file = ArtifactReader(args.labels).__getitem__, args.labels, args.labels
result = train(voc, label_of, name, args.cfg, args.out, resolve_device(args.device), args.seed, labels_file)
write_json(args.report, result)
print(f"train_segmentation: {result['images']} images of {args.split} with {name}, final loss "
      f"{result['history'][-1]['loss']:.4f} -> {args.out}")
