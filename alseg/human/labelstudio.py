"""Label Studio's side of a round: the labelling config, one task per queried image (the
image inline as a PNG data URI; its queried regions as polygon pre-annotations, each with
the id ``q<global region id>``), and the parsing of Label Studio's JSON export back into
answers, with a message for every answer that cannot be used.

Questions by label type: ``dominant`` — one choice per region (its main class, or
``void``: no class); ``multiclass`` — several choices per region (``void`` as well with
the void bit); ``image`` — several choices for the whole image; ``pixel`` — brush strokes
of a class (or ``void``) inside the outlined regions (``alseg.human.rle``).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from alseg.human.queries import QueryRound

VOID = "void"
FROM_REGION, FROM_CLASS = "region", "class"


def choice_names(q: QueryRound) -> list[str]:
    """The choices of a question: the classes, and ``void`` where it is an answer."""
    void = q.label_type in ("dominant", "pixel") or (q.label_type == "multiclass" and q.void_bit)
    return [*q.classes, *([VOID] if void else [])]


def label_config(q: QueryRound) -> str:
    """The Label Studio labelling config (XML) of the round's question."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in choice_names(q))
    if q.label_type == "pixel":
        return _brush_config(q)
    if q.label_type == "image":
        question = "Which classes are in this image?"
        regions, per_region, how = "", "", "multiple"
    else:
        question = (
            "For each outlined region: its main class"
            if q.label_type == "dominant"
            else "For each outlined region: every class in it"
        )
        regions = (
            f'  <PolygonLabels name="{FROM_REGION}" toName="image" strokeWidth="2">\n'
            '    <Label value="query" background="#ff0000"/>\n'
            "  </PolygonLabels>\n"
        )
        per_region = ' perRegion="true"'
        how = "single" if q.label_type == "dominant" else "multiple"
    return (
        "<View>\n"
        f"  <Header value={quoteattr(question)}/>\n"
        '  <Image name="image" value="$image" zoom="true" maxWidth="480px"/>\n'
        f"{regions}"
        f'  <Choices name="{FROM_CLASS}" toName="image" choice="{how}"{per_region} '
        'showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def _brush_config(q: QueryRound) -> str:
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in choice_names(q))
    question = "Paint every pixel of each outlined region with its class (void: no class)"
    return (
        "<View>\n"
        f"  <Header value={quoteattr(question)}/>\n"
        '  <Image name="image" value="$image" zoom="true" maxWidth="480px"/>\n'
        f'  <PolygonLabels name="{FROM_REGION}" toName="image" strokeWidth="2">\n'
        '    <Label value="query" background="#ff0000"/>\n'
        "  </PolygonLabels>\n"
        f'  <BrushLabels name="{FROM_CLASS}" toName="image">\n'
        f"{labels}\n"
        "  </BrushLabels>\n"
        "</View>\n"
    )


def png_data_uri(image: np.ndarray) -> str:
    """(H, W, 3) uint8 -> a data URI Label Studio shows without a file server."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def region_outline(mask: np.ndarray) -> list[list[float]]:
    """The outline of a region (H, W) bool as polygon points in percent of the image (the
    longest contour of its largest part; Label Studio's coordinates)."""
    from skimage.measure import find_contours

    H, W = mask.shape
    padded = np.pad(mask.astype(float), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        return []
    c = max(contours, key=len) - 1.0  # undo the padding
    ys = np.clip(c[:, 0] + 0.5, 0, H)
    xs = np.clip(c[:, 1] + 0.5, 0, W)
    step = max(1, len(c) // 200)  # at most ~200 points
    return [[round(100 * x / W, 3), round(100 * y / H, 3)] for x, y in zip(xs[::step], ys[::step])]


def tasks(q: QueryRound, image_fn: Any, region_map_fn: Any, run_name: str) -> list[dict]:
    """One task per queried image: the image, the round's ids in ``data``, and (region
    questions) the queried regions as polygon predictions with ids ``q<global id>``.

    Args:
        image_fn: ``index -> (H, W, 3) uint8``.
        region_map_fn: ``index -> (H, W)`` local region ids.
    """
    by_image: dict[int, list[dict[str, Any]]] = {}
    for query in q.pending:
        by_image.setdefault(int(query["image"]), []).append(query)
    out = []
    for index, queries in sorted(by_image.items()):
        image = image_fn(index)
        H, W = image.shape[:2]
        result = []
        if q.label_type != "image":
            rmap = np.asarray(region_map_fn(index))
            for query in queries:
                points = region_outline(rmap == int(query["region"]))
                result.append(
                    {
                        "id": f"q{query['id']}",
                        "from_name": FROM_REGION,
                        "to_name": "image",
                        "type": "polygonlabels",
                        "original_width": W,
                        "original_height": H,
                        "image_rotation": 0,
                        "value": {"points": points, "polygonlabels": ["query"], "closed": True},
                    }
                )
        out.append(
            {
                "data": {
                    "image": png_data_uri(image),
                    "alseg_run": run_name,
                    "alseg_run_id": q.run_id,
                    "alseg_round": q.round,
                    "alseg_image": index,
                },
                "predictions": [{"model_version": f"alseg-round-{q.round}", "result": result}],
            }
        )
    return out


@dataclass
class Parsed:
    """Answers read from an export: global region id -> the names chosen; and messages."""

    answers: dict[int, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    painted: dict[int, np.ndarray] = field(default_factory=dict)  # pixel: image -> (H, W)


def _choices(results: list[dict[str, Any]]) -> tuple[dict[str, list[str]], list[list[str]]]:
    """Per-region choices (by result id) and whole-image choices of one annotation."""
    per_region: dict[str, list[str]] = {}
    whole: list[list[str]] = []
    for res in results:
        if res.get("from_name") != FROM_CLASS or res.get("type") != "choices":
            continue
        chosen = [str(c) for c in res.get("value", {}).get("choices", [])]
        if "id" in res and q_id(str(res["id"])) is not None:
            per_region.setdefault(str(res["id"]), []).extend(chosen)
        else:
            whole.append(chosen)
    return per_region, whole


def q_id(result_id: str) -> int | None:
    return int(result_id[1:]) if result_id.startswith("q") and result_id[1:].isdigit() else None


def parse_export(export: Any, q: QueryRound, region_map_fn: Any = None) -> Parsed:
    """Read Label Studio's JSON export (a list of tasks with ``annotations``): the last
    submitted, not cancelled annotation of each task of this round counts.

    Args:
        region_map_fn: ``index -> (H, W)`` local region ids (pixel answers only).
    """
    out = Parsed()
    if not isinstance(export, list):
        out.problems.append("the file is not a Label Studio JSON export (a list of tasks)")
        return out
    names = choice_names(q)
    queries: dict[int, dict[int, dict[str, Any]]] = {}  # image -> its queries by id
    for g, x in q.by_id().items():
        queries.setdefault(int(x["image"]), {})[g] = x
    answered = set(q.answered)
    for task in export:
        _parse_task(task, q, queries, answered, names, out, region_map_fn)
    return out


def _task_image(task: Any, q: QueryRound, out: Parsed) -> tuple[Any, int] | None:
    """A task's id and image index, or None (its problem noted) when it is not a task of
    this round of this run."""
    if not isinstance(task, dict):
        out.problems.append(f"a task is not a JSON object: {str(task)[:60]!r}")
        return None
    tid = task.get("id", "?")
    data = task.get("data", {})
    if not isinstance(data, dict):
        out.problems.append(f"task {tid}: its 'data' is not an object ({str(data)[:60]!r})")
        return None
    if data.get("alseg_round") != q.round or "alseg_image" not in data:
        out.problems.append(
            f"task {tid}: not a task of round {q.round} of this run "
            f"(alseg_round={data.get('alseg_round')!r})"
        )
        return None
    if q.run_id and data.get("alseg_run_id") != q.run_id:
        out.problems.append(
            f"task {tid}: a task of another run ({data.get('alseg_run')!r}, run id "
            f"{data.get('alseg_run_id')!r}), not of this one (run id {q.run_id!r}); import it "
            "into that run"
        )
        return None
    image = _image_id(data["alseg_image"])
    if image is None:
        out.problems.append(
            f"task {tid}: data.alseg_image={data['alseg_image']!r} is not an image index "
            "(a whole number, as alseg exported it)"
        )
        return None
    return tid, image


def _parse_task(
    task: Any,
    q: QueryRound,
    queries: dict[int, dict[int, dict[str, Any]]],
    answered: set[int],
    names: list[str],
    out: Parsed,
    region_map_fn: Any = None,
) -> None:
    found = _task_image(task, q, out)
    if found is None:
        return
    tid, image = found
    mine = queries.get(image, {})
    if not mine:
        out.problems.append(f"task {tid}: image {image} was not queried in round {q.round}")
        return
    done = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
    if not done:
        out.ignored.append(f"task {tid} (image {image}): not annotated yet (stays pending)")
        return
    if q.label_type == "pixel":
        fresh = {g: x for g, x in mine.items() if g not in answered}
        if len(fresh) < len(mine):
            out.ignored.append(
                f"task {tid}, image {image}: {len(mine) - len(fresh)} regions already "
                "imported; ignored (nothing is paid twice)"
            )
        if fresh:
            results = done[-1].get("result", [])
            _parse_brush(tid, image, fresh, results, names, region_map_fn, out)
        return
    per_region, whole = _choices(done[-1].get("result", []))
    if q.label_type == "image":
        per_region = {f"q{g}": sum(whole, []) for g in mine} if whole else {}
    for rid in per_region:
        g = q_id(rid)
        if g not in mine:
            out.problems.append(f"task {tid}: region {rid} is not a query of image {image}")
    for g, query in sorted(mine.items()):
        _check_answer(tid, query, per_region.get(f"q{g}", []), q, names, answered, out)


def _image_id(value: Any) -> int | None:
    """An exported image index (an int, or its decimal string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _check_answer(
    tid: Any,
    query: dict[str, Any],
    chosen: list[str],
    q: QueryRound,
    names: list[str],
    answered: set[int],
    out: Parsed,
) -> None:
    g = int(query["id"])
    where = f"task {tid}, image {query['image']}, region {query['region']}"
    if g in answered or g in out.answers:
        if chosen:
            out.ignored.append(f"{where}: already imported; ignored (nothing is paid twice)")
        return
    if not chosen:
        out.ignored.append(f"{where}: no answer (stays pending)")
        return
    unknown = [c for c in chosen if c not in names]
    if unknown:
        out.problems.append(
            f"{where}: {', '.join(map(repr, unknown))} is not a class of this run "
            f"(valid: {', '.join(names)})"
        )
        return
    if q.label_type == "dominant" and len(set(chosen)) > 1:
        out.problems.append(
            f"{where}: {len(set(chosen))} answers ({', '.join(chosen)}) to a one-choice question"
        )
        return
    out.answers[g] = sorted(set(chosen), key=names.index)


def _parse_brush(
    tid: Any,
    image: int,
    mine: dict[int, dict[str, Any]],
    results: list[dict[str, Any]],
    names: list[str],
    region_map_fn: Any,
    out: Parsed,
) -> None:
    """Pixel answers: the brush strokes of a task painted into one label map (later
    strokes over earlier ones; void and unpainted pixels: 255, not trained on); strokes
    outside the queried regions are an error; a queried region with no stroke stays
    pending."""
    rmap = np.asarray(region_map_fn(image))
    painted = np.full(rmap.shape, 255, dtype=np.uint8)
    touched = np.zeros(rmap.shape, dtype=bool)
    asked = np.isin(rmap, [int(x["region"]) for x in mine.values()])
    for res in results:
        if res.get("from_name") != FROM_CLASS or res.get("type") != "brushlabels":
            continue
        stroke = _stroke(tid, image, res.get("value", {}), names, rmap.shape, out)
        if stroke is None:
            continue
        label, mask = stroke
        outside = int((mask & ~asked).sum())
        if outside:
            out.problems.append(
                f"task {tid}, image {image}: a {label} stroke paints {outside} pixels "
                "outside the queried regions (not used)"
            )
        painted[mask & asked] = 255 if label == VOID else names.index(label)
        touched |= mask & asked
    for g, query in sorted(mine.items()):
        region = rmap == int(query["region"])
        if not (touched & region).any():
            where = f"task {tid}, image {image}, region {query['region']}"
            out.ignored.append(f"{where}: nothing painted (stays pending)")
            continue
        out.answers[g] = [names[int(c)] for c in np.unique(painted[region]) if c != 255]
        out.painted[image] = painted


def _stroke(
    tid: Any, image: int, value: dict[str, Any], names: list[str], shape: Any, out: Parsed
) -> tuple[str, np.ndarray] | None:
    """A brush result's label and mask, or None (with a message) when it is unusable."""
    from alseg.human.rle import brush_mask

    labels = value.get("brushlabels", [])
    if len(labels) != 1 or labels[0] not in names:
        out.problems.append(
            f"task {tid}, image {image}: a brush stroke labeled {labels!r} (valid: one of "
            f"{', '.join(names)})"
        )
        return None
    try:
        return labels[0], brush_mask(value.get("rle", []), *shape)
    except ValueError as e:
        out.problems.append(f"task {tid}, image {image}: a {labels[0]} stroke: {e}")
        return None
