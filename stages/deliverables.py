"""Write the manifest of everything a dataset's run delivered (results/{dataset}/all):
python -m stages.deliverables --items name=path ... --out FILE"""
from pipeline.evaluation.deliverables import manifest
from stages._args import parser, write_json


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--items", nargs="+", required=True, help="deliverables, name=path")
    p.add_argument("--out", required=True, help="the manifest (JSON)")
    args = p.parse_args(argv)
    items = dict(item.split("=", 1) for item in args.items)
    result = manifest(items)
    write_json(args.out, result)
    for name, entry in result.items():
        count = f" ({entry['images']} images)" if entry.get("images") is not None else ""
        print(f"  {name:<12} {entry['path']}{count}")
    print(f"deliverables: {len(result)} -> {args.out}")


if __name__ == "__main__":
    main()
