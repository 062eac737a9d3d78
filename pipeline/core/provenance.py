"""What a resumable file was computed from: the identities a `.partial` records so that it is
resumed only on exactly the same inputs (store.ArtifactWriter, training.fit).

An input artifact is identified by the digest its writer stored in it (ArtifactReader.digest),
a checkpoint by a hash of its bytes (store.file_digest), and a dataset split by its list of ids
and the size and modification time of every file of those images: hashing the images themselves
would cost a pass over the dataset per job, and a rewritten file changes its mtime.
"""
from __future__ import annotations

import hashlib
import os

from pipeline.data.voc import VOCDataset


def _stat(path) -> str:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def dataset_identity(voc: VOCDataset, masks: bool = False) -> dict:
    """The split (name, root, a hash of its ids in order) and a hash of the stat of each image's
    JPEG and XML (and mask, when the masks are what is trained on)."""
    ids = hashlib.blake2b(digest_size=16)
    files = hashlib.blake2b(digest_size=16)
    for image_id in voc.ids:
        ids.update(f"{image_id}\n".encode())
        paths = [voc.image_path(image_id), voc.annotation_path(image_id)]
        if masks:
            paths.append(voc.mask_path(image_id))
        files.update(f"{image_id} {' '.join(_stat(p) for p in paths)}\n".encode())
    return {"root": os.path.abspath(voc.root), "split": voc.split, "images": len(voc.ids),
            "ids": ids.hexdigest(), "files": files.hexdigest()}
