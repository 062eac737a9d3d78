"""Rasterise the semantic masks of a shard of a COCO-format split from its instance annotations:
python -m stages.coco_masks --index INDEX.json --shard k-of-n --out MASKS.h5 --tally TALLY.json"""
import json
from pathlib import Path

from tqdm import tqdm

from pipeline.core.shards import parse_shard, shard_ids
from pipeline.data import coco
from stages._args import add_shard, parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--index", required=True, help="the split's index (stages.coco_index)")
    add_shard(p, "uint8 label maps, 255 = ignore")
    args = p.parse_args(argv)

    index = json.loads(Path(args.index).read_text())
    ids = shard_ids([e["id"] for e in index["images"]], *parse_shard(args.shard))
    tally = coco.write_masks(index, ids, args.out, progress=lambda todo: tqdm(todo, desc="coco masks"))
    write_json(args.tally, tally)
    print(f"coco_masks: {tally['computed_now']} of {tally['images']} masks rasterised -> {args.out}")


if __name__ == "__main__":
    main()
