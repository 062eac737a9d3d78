"""A small VOC-format dataset that is hard in the ways PASCAL VOC is hard.

Every object has a body and a small part. The body carries class evidence, as a cat's fur
does: its own colour family, texture and outline, varied from object to object. The part (a
bright shape, as a face) is the most discriminative region. Classes come in look-alike pairs
(as cat/dog, cow/sheep, bus/train) whose bodies differ only slightly, so a classifier needs the
part to tell the twins apart: its CAM peaks on the part and fades over the body, and the
methods that grow seeds along appearance (affinity, random walk, PAMR, CRF) have a body to grow
into. Images hold several objects of one to three classes at varied scales and aspects, with
occlusion, on textured, cluttered backgrounds with context that co-occurs with some classes
(water with one, grass with another). Shapes that resemble a body without being one
(distractors) are rare and never drawn in a class's colours.

Generation is a pure function of (seed, split, index), so the same seed writes byte-identical
files and any image can be regenerated on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .palette import save_label_png


@dataclass(frozen=True)
class Look:
    """How one class looks: the body shared (nearly) with its twin, the part its own."""
    body_rgb: tuple[float, float, float]   # mean body colour; each object jitters around it
    texture: str                           # fur | spots | stripes
    squareness: float                      # outline exponent: 2 = ellipse, larger = boxier
    part_rgb: tuple[int, int, int]
    part_shape: str                        # circle | square | triangle | diamond | cross | ring


# Three look-alike pairs, in config order after 'background'. Twins share texture and outline
# and differ by a small shift of the body colour (less than an object's own jitter).
LOOKS = {
    "fox": Look((170, 100, 50), "fur", 2.0, (245, 245, 240), "circle"),
    "lynx": Look((180, 120, 60), "fur", 2.0, (20, 20, 25), "triangle"),
    "frog": Look((80, 140, 70), "spots", 3.0, (235, 30, 40), "diamond"),
    "newt": Look((100, 150, 60), "spots", 3.0, (250, 200, 0), "square"),
    "tram": Look((70, 85, 165), "stripes", 5.0, (0, 230, 230), "cross"),
    "barge": Look((100, 80, 160), "stripes", 5.0, (255, 110, 200), "ring"),
}
CONTEXT = {"barge": "water", "newt": "grass"}    # scene context that co-occurs with a class
CONTEXT_WITH, CONTEXT_WITHOUT = 0.7, 0.1         # P(context | class present), P(context | absent)
BODY_JITTER = 16                                 # per-object shift of the body colour (per channel, uniform +-)
BODY_SATURATION = 0.5                            # body colours pulled halfway to their grey: less body evidence (docs/demo.md)
DISTRACTOR_RATE = 0.08                           # P(an image holds one body-like background shape)
BORDER = 1                                       # erode/dilate radius of the 255 band at object edges


def twin(name: str) -> str:
    """A class's look-alike: LOOKS lists the pairs one after the other."""
    names = list(LOOKS)
    return names[names.index(name) ^ 1]


@dataclass
class Scene:
    image: np.ndarray          # H x W x 3 uint8
    label: np.ndarray          # H x W uint8, 255 band at object edges
    objects: list              # [(class_id, visible mask)] of the labelled objects
    bodies: list               # [(class_id, visible body mask without the part)]
    distractors: list          # visible masks of body-like background shapes (label 0)


def _smooth_noise(rng, h, w, cells, channels=1):
    """Value noise: a coarse random grid upsampled with bicubic interpolation."""
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _muted_colour(rng):
    """Low-saturation colours: the background's palette, away from every class's body colour."""
    grey = rng.uniform(50, 210)
    return tuple(float(np.clip(grey + rng.uniform(-30, 30), 0, 255)) for _ in range(3))


def _background(rng, h, w):
    img = np.array(_muted_colour(rng)) + rng.uniform(-30, 30, size=3) * (_smooth_noise(rng, h, w, 3, 3) - 0.5) * 2
    # oriented grating + fine grain: texture a CAM must learn to ignore
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(5, 14)
    grating = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
    img += rng.uniform(6, 18) * grating[..., None]
    img += rng.normal(0, 7, size=(h, w, 1))
    return img


def _clutter(rng, img, count):
    h, w = img.shape[:2]
    for _ in range(count):
        colour, kind = _muted_colour(rng), rng.integers(4)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(4, max(6, min(h, w) // 5)))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.3, 1.5))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), s // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            end = (x + int(rng.integers(-2 * s, 2 * s)), y + int(rng.integers(-2 * s, 2 * s)))
            cv2.line(img, (x, y), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            pts = np.array([(x + rng.integers(-s, s), y + rng.integers(-s, s)) for _ in range(3)], np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)


def _context(rng, img, kind):
    h, w = img.shape[:2]
    top = int(h * rng.uniform(0.6, 0.78))
    yy, xx = np.mgrid[top:h, 0:w].astype(np.float32)
    if kind == "water":
        waves = np.sin(xx / rng.uniform(3, 6) + np.sin(yy / 3.0) * 2)
        band = np.stack([40 + 10 * waves, 95 + 20 * waves, 165 + 25 * waves], -1)
    else:  # grass: speckled green blades
        blades = rng.random((h - top, w)) ** 3
        band = np.stack([60 + 30 * blades, 120 + 70 * blades, 45 + 20 * blades], -1)
    img[top:] = band


def _texture(rng, h, w, kind, rgb, saturation=BODY_SATURATION):
    """A body's surface: its colour family with a texture of its kind, drawn anew per object."""
    family = np.asarray(rgb, np.float32)
    family = family.mean() + saturation * (family - family.mean())
    base = family + rng.uniform(-BODY_JITTER, BODY_JITTER, size=3)
    grain = 8 * (_smooth_noise(rng, h, w, 12, 1) - 0.5) + rng.normal(0, 4, size=(h, w, 1))
    if kind == "fur":       # soft patches of lighter and darker fur
        pattern = 40 * (_smooth_noise(rng, h, w, 7, 1) - 0.5)
    elif kind == "spots":   # dark blotches
        pattern = -45 * (_smooth_noise(rng, h, w, 14, 1) > 0.62)
    else:                   # stripes of varied direction and period
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta, period = rng.uniform(0, np.pi), rng.uniform(6, 11)
        pattern = 22 * np.sign(np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period))[..., None]
    return base + pattern + grain


def _outline(rng, h, w, squareness):
    """A body's mask: a rotated superellipse with a wobbly rim; varied scale and aspect."""
    side = min(h, w)
    a = side * rng.uniform(0.25, 0.45)             # semi-major axis
    b = a * rng.uniform(0.45, 0.75)
    angle = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    wobble = 1 + 0.08 * np.sin(3 * t + rng.uniform(0, 2 * np.pi)) + 0.05 * np.sin(5 * t + rng.uniform(0, 2 * np.pi))
    c, s = np.cos(t), np.sin(t)
    x = a * wobble * np.sign(c) * np.abs(c) ** (2 / squareness)
    y = b * wobble * np.sign(s) * np.abs(s) ** (2 / squareness)
    pts = np.stack([cx + x * np.cos(angle) - y * np.sin(angle), cy + x * np.sin(angle) + y * np.cos(angle)], -1)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool), (cx, cy, a, b, angle)


def _draw_part(mask, shape, centre, r):
    cx, cy = centre
    if shape == "circle":
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif shape == "ring":
        cv2.circle(mask, (cx, cy), r, 1, max(2, r // 2))
    elif shape == "square":
        cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r), 1, -1)
    elif shape == "cross":
        t = max(1, r // 2)
        cv2.rectangle(mask, (cx - r, cy - t), (cx + r, cy + t), 1, -1)
        cv2.rectangle(mask, (cx - t, cy - r), (cx + t, cy + r), 1, -1)
    else:
        if shape == "triangle":
            pts = [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
        else:  # diamond
            pts = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)


def _part(rng, h, w, look, geometry):
    """The part: inside the body near one end of its long axis, as a face is inside an outline."""
    cx, cy, a, b, angle = geometry
    end = 0.5 * a * (1 if rng.random() < 0.5 else -1)
    mask = np.zeros((h, w), np.uint8)
    r = max(2, int(b * rng.uniform(0.25, 0.36)))
    _draw_part(mask, look.part_shape, (int(cx + end * np.cos(angle)), int(cy + end * np.sin(angle))), r)
    return mask.astype(bool)


def _collar(img, body, part, part_rgb, tint_at_part, reach):
    """Blend the body toward its part's colour, by tint_at_part at the part's edge fading to none at
    reach part radii: evidence that declines with distance, as the fur around a cat's face, where
    the plain demo steps from part to body (docs/demo.md, "Calibrating the seeds")."""
    radius = max(2.0, float(np.sqrt(part.sum() / np.pi)))   # of a disc as large as the part
    distance = cv2.distanceTransform((~part).astype(np.uint8), cv2.DIST_L2, 5)
    tint = (tint_at_part * np.clip(1 - distance / (reach * radius), 0, 1))[..., None]
    img[body] = (img * (1 - tint) + np.array(part_rgb, np.float32) * tint)[body]


def _distractor_colour(rng):
    """A body-like shape's colour: saturated, but in none of the classes' colour families."""
    teal, pink, olive = (50, 150, 150), (190, 110, 150), (175, 170, 40)
    return [teal, pink, olive][int(rng.integers(3))]


def _choose_classes(rng, names):
    k = rng.choice([1, 2, 3], p=[0.6, 0.32, 0.08])
    chosen = list(rng.choice(len(names), size=k, replace=False))
    n_objects = int(rng.integers(k, 3)) if k < 3 else 3
    return chosen + list(rng.choice(chosen, size=n_objects - k))


CALIBRATION = "calibration"   # the split name of generate's n_calibration images


def demo_image_id(split: str, index: int) -> str:
    return f"{split}_{index:04d}"


def render(seed: int, split: str, index: int, classes: list[str], min_size: int, max_size: int,
           collar_tint: float = 0.0, collar_reach: float = 2.5) -> Scene:
    """One image with its label map (255 band at edges), objects, bodies and distractors; a
    collar_tint above 0 blends each body toward its part's colour around the part (_collar)."""
    split_code = sum(ord(ch) * 31 ** i for i, ch in enumerate(split)) % (2 ** 31)
    rng = np.random.default_rng([seed, split_code, index])
    names = classes[1:]
    h, w = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    objects = [int(c) + 1 for c in _choose_classes(rng, names)]

    img = _background(rng, h, w)
    present = {names[c - 1] for c in objects}
    for cls, ctx in CONTEXT.items():
        if cls in names and rng.random() < (CONTEXT_WITH if cls in present else CONTEXT_WITHOUT):
            _context(rng, img, ctx)
    _clutter(rng, img, int(rng.integers(5, 13)))

    label = np.zeros((h, w), np.uint8)
    edges = np.zeros((h, w), bool)
    drawn, bodies = [], []                       # (class or None, mask still visible)
    for cls in [None] * int(rng.random() < DISTRACTOR_RATE) + objects:
        look = LOOKS[names[cls - 1]] if cls is not None else None
        squareness = look.squareness if look else float(rng.choice([2.0, 3.0, 5.0]))
        for _ in range(20):   # occlusion, but never hiding most of an earlier object (or its part)
            body, geometry = _outline(rng, h, w, squareness)
            if all((body & m).sum() < 0.25 * m.sum() for _, m in drawn):
                break
        if look is None:
            kind = ["fur", "spots", "stripes"][int(rng.integers(3))]
            img[body] = _texture(rng, h, w, kind, _distractor_colour(rng), saturation=1.0)[body]
            drawn.append((None, body))
            continue
        part = _part(rng, h, w, look, geometry) & body
        img[body] = _texture(rng, h, w, look.texture, look.body_rgb)[body]
        if collar_tint > 0:
            _collar(img, body, part, look.part_rgb, collar_tint, collar_reach)
        img[part] = np.array(look.part_rgb, np.float32) + rng.normal(0, 8, size=(int(part.sum()), 3))
        label[body] = cls
        drawn = [(c, m & ~body) for c, m in drawn] + [(cls, body)]
        bodies = [(c, m & ~body) for c, m in bodies] + [(cls, body & ~part)]
        kernel = np.ones((2 * BORDER + 1, 2 * BORDER + 1), np.uint8)
        b8 = body.astype(np.uint8)
        edges |= cv2.dilate(b8, kernel) != cv2.erode(b8, kernel)
    label[edges] = 255

    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0.6)
    visible = [(c, m) for c, m in drawn if c is not None and m.any()]
    distractors = [m for c, m in drawn if c is None and m.any()]
    return Scene(img, label, visible, [(c, m) for c, m in bodies if m.any()], distractors)


def _annotation_xml(image_id, h, w, classes, objects):
    parts = [f"<annotation>\n  <folder>demo</folder>\n  <filename>{image_id}.jpg</filename>\n"
             f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n"
             "  <segmented>1</segmented>\n"]
    for cls, mask in objects:
        ys, xs = np.nonzero(mask)
        parts.append(f"  <object>\n    <name>{classes[cls]}</name>\n    <difficult>0</difficult>\n"
                     f"    <bndbox>\n      <xmin>{xs.min() + 1}</xmin>\n      <ymin>{ys.min() + 1}</ymin>\n"
                     f"      <xmax>{xs.max() + 1}</xmax>\n      <ymax>{ys.max() + 1}</ymax>\n    </bndbox>\n  </object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def generate(root: str | Path, classes: list[str], seed: int, n_train: int, n_val: int,
             min_size: int, max_size: int, collar_tint: float = 0.0, collar_reach: float = 2.5,
             progress=None, n_calibration: int = 0) -> None:
    """Write the whole dataset in VOC layout under root (files are overwritten). n_calibration > 0
    adds a `calibration` split (images with masks for choosing background settings): being a split
    of its own, its images come from their own random stream and leave train and val unchanged."""
    unknown = [c for c in classes[1:] if c not in LOOKS]
    if unknown:
        raise ValueError(f"demo classes {unknown} unknown; the demo generator draws {list(LOOKS)}")
    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "val": n_val, **({CALIBRATION: n_calibration} if n_calibration else {})}
    jobs = [(split, i) for split, n in counts.items() for i in range(n)]
    ids = {split: [] for split in counts}
    for split, i in (progress(jobs) if progress else jobs):
        image_id = demo_image_id(split, i)
        scene = render(seed, split, i, classes, min_size, max_size, collar_tint, collar_reach)
        Image.fromarray(scene.image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=92)
        save_label_png(scene.label, root / "SegmentationClass" / f"{image_id}.png")
        xml = _annotation_xml(image_id, *scene.label.shape, classes, scene.objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        ids[split].append(image_id)
    for split, names in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
