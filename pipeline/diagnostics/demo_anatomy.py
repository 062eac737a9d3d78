"""Where a CAM puts its weight on the demo's objects, whose parts and bodies the generator knows:
the class map (max-normalised, as extract_cams writes it) on the part, on the body by distance
from the part, and on the background just outside the object; and a class's map on its own
bodies against its twin's, the other classes' and the background. The measurement behind the
demo's calibration (docs/demo.md): seeds cover a body where its map stays above the threshold
far from the part, and bodies that look alike (twins) score alike unless the part is seen."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np

from pipeline.data.demo import Scene, twin


def _class_regions(scene: Scene, cls: int):
    """(part, body) masks of all visible objects of class cls in the scene."""
    whole = np.any([m for c, m in scene.objects if c == cls], axis=0)
    body = np.any([m for c, m in scene.bodies if c == cls] or [np.zeros_like(whole)], axis=0)
    return whole & ~body, body


def _body_kind(map_class: str, body_class: str) -> str:
    if body_class == map_class:
        return "own"
    return "twin" if body_class == twin(map_class) else "other"


def anatomy(scenes: Iterable[tuple[str, Scene]], maps_of: Callable[[str], tuple[np.ndarray, list]],
            classes: list[str], threshold: float, bin_px: int = 16, ring_px: int = 12, min_part: int = 5,
            min_body: int = 50) -> dict:
    """scenes: (image id, Scene); maps_of(image id) -> (maps (K, H, W), class id of each map);
    classes: the names of the class ids, background first.
    Per class present in an image (its part of at least min_part pixels): the map's mean on the
    part, on the body in bands of bin_px by distance from the part, and on the background
    pixels within ring_px of the object; body pixels at or above threshold over all objects.
    And every present class's map, averaged over each body of at least min_body pixels by whose
    body it is (its own class's, its twin's, another class's) and over the background."""
    part_means, ring_means, bands = [], [], {}
    on_bodies = {"own": [], "twin": [], "other": [], "background": []}
    above = total = 0
    for image_id, scene in scenes:
        maps, ids = maps_of(image_id)
        ids = [int(c) for c in ids]
        present = {c for c, _ in scene.objects}
        background = scene.label == 0
        for k, map_class in enumerate(ids):
            if map_class not in present:
                continue
            on_bodies["background"].append(float(maps[k][background].mean()))
            for body_class, body in scene.bodies:
                if body.sum() >= min_body:
                    kind = _body_kind(classes[map_class], classes[body_class])
                    on_bodies[kind].append(float(maps[k][body].mean()))
        for cls in sorted(present):
            part, body = _class_regions(scene, cls)
            if part.sum() < min_part or cls not in ids:
                continue
            m = maps[ids.index(cls)].astype(np.float64)
            part_means.append(m[part].mean())
            distance = cv2.distanceTransform((~part).astype(np.uint8), cv2.DIST_L2, 5)
            for band in np.unique((distance[body] // bin_px).astype(int)):
                sel = body & (distance >= band * bin_px) & (distance < (band + 1) * bin_px)
                bands.setdefault(int(band), []).append(m[sel].mean())
            above += int((m[body] >= threshold).sum())
            total += int(body.sum())
            size = 2 * ring_px + 1
            whole = (part | body).astype(np.uint8)
            ring = cv2.dilate(whole, np.ones((size, size), np.uint8)).astype(bool) & ~whole.astype(bool) & background
            if ring.any():
                ring_means.append(m[ring].mean())
    return {"objects": len(part_means), "threshold": threshold,
            "part_mean": float(np.mean(part_means)) if part_means else None,
            "body_at_or_above_threshold": above / total if total else None,
            "background_ring_mean": float(np.mean(ring_means)) if ring_means else None,
            "body_by_distance": [{"from_px": b * bin_px, "to_px": (b + 1) * bin_px, "objects": len(v),
                                  "mean": float(np.mean(v))} for b, v in sorted(bands.items())],
            "class_map_on_bodies": {kind: {"bodies": len(v), "mean": float(np.mean(v)) if v else None}
                                    for kind, v in on_bodies.items()}}
