"""The manifest of results/{dataset}/all: what the run delivered, where, and how many images."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.folders import IMAGE_SUFFIXES


def describe(path: str | Path) -> dict:
    """{path, kind, images}: a folder counts its images (PNG labels; overlays apart), a file its size."""
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        labels = [p for p in files if not p.stem.endswith("_overlay")]
        return {"path": str(path), "kind": "folder", "images": len(labels)}
    if not path.is_file():
        raise FileNotFoundError(f"deliverable {path} does not exist")
    entry = {"path": str(path), "kind": "file", "bytes": path.stat().st_size}
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if "miou" in data:
            entry.update(miou=data["miou"], images=data.get("images"))
    return entry


def manifest(items: dict[str, str]) -> dict:
    return {name: describe(path) for name, path in items.items()}
