"""Confident affinity labels from the CAMs, via two dense CRFs: python -m stages.affinity_labels ..."""
from pipeline.affinity_labels import make_labels, score_labels
from pipeline.data.voc import VOCDataset
from pipeline.store import ArtifactReader
from stages._args import add_dataset, json_arg, parser, write_json

p = parser(__doc__)
add_dataset(p, split_flags=("--split", "--eval-split"))
p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the affinity config section")
p.add_argument("--workers", type=int, default=1, help="processes running the CRF")
p.add_argument("--out", required=True, help="HDF5 output (uint8 labels, 255 = ignore)")
p.add_argument("--report", required=True, help="JSON with label coverage and accuracy")
args = p.parse_args()

voc = VOCDataset(args.root, args.classes, args.split)
voc.check(masks=False)
eval_voc = VOCDataset(args.root, args.classes, args.eval_split)
eval_voc.check(masks=True)
coverage = make_labels(ArtifactReader(args.cams), voc, args.out, args.cfg, args.workers)
accuracy = score_labels(ArtifactReader(args.out), eval_voc)
write_json(args.report, {**coverage, "accuracy_on_labelled": accuracy})
print(f"affinity_labels: {len(voc)} images, fg {coverage['fg_fraction']:.3f} bg {coverage['bg_fraction']:.3f} "
      f"ignored {coverage['ignored_fraction']:.3f}; mIoU on labelled pixels of {args.eval_split} "
      f"{accuracy['miou']:.4f} -> {args.out}")
