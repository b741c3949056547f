"""Synthesis output: image files, the manifest, and the resume checks.

While generating, rank ``r`` appends one line per written image to
``manifest.rank<r>.jsonl`` (first a ``{"settings": ...}`` header line per
session). Appending a line is the cheapest durable record, and a line cut by
a kill is simply ignored on reading (the image it described is then
re-verified from its PNG). At the end rank 0 merges every part into
``manifest.json``, in annotation order, and removes the parts::

    {"format": "pcm_plugin.synth_manifest/1", "annotation": ...,
     "settings": {model_dir, model_fingerprint, pipeline, steps, guidance,
                  height, width, seed, dtype},
     "batch_size": 4, "num_captions": n, "num_images": m, "complete": true,
     "skipped_bad": [{"image_id", "reason"}],
     "images": [{"image_id", "file", "bytes", "sha256", "seed"}, ...]}
"""
import glob
import hashlib
import io
import json
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from pcm_plugin.utils.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    disk_full_error,
)

logger = logging.getLogger(__name__)

FORMAT = 'pcm_plugin.synth_manifest/1'
IMAGE_DIR = 'images'
MANIFEST = 'manifest.json'
PART_GLOB = 'manifest.rank*.jsonl'
# Recorded but not compared on resume: a moved model keeps its fingerprint.
INFORMATIONAL = ('model_dir',)


def part_path(out_dir: str, rank: int) -> str:
    return osp.join(out_dir, f'manifest.rank{rank}.jsonl')


def _read_manifest(out_dir: str) -> Dict:
    path = osp.join(out_dir, MANIFEST)
    if not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path} is not valid JSON ({err}); delete it '
                             'and re-run: the images are re-verified') from err


def _read_part_lines(path: str) -> List[Dict]:
    lines = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, line in enumerate(f, 1):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut short by a killed writer.
                logger.warning('%s:%d: ignoring an unreadable line', path,
                               number)
    return lines


def load_records(out_dir: str) -> Dict[str, Dict]:
    """image id -> latest record, from ``manifest.json`` and all parts."""
    records = {r['image_id']: r
               for r in _read_manifest(out_dir).get('images', [])}
    for path in sorted(glob.glob(osp.join(out_dir, PART_GLOB))):
        for line in _read_part_lines(path):
            if 'image_id' in line:
                records[line['image_id']] = line
    return records


def check_settings(out_dir: str, settings: Dict) -> None:
    """Refuse to mix images made with other settings in one folder."""
    found: List[Tuple[str, Dict]] = []
    manifest = _read_manifest(out_dir)
    if 'settings' in manifest:
        found.append((osp.join(out_dir, MANIFEST), manifest['settings']))
    for path in sorted(glob.glob(osp.join(out_dir, PART_GLOB))):
        found += [(path, line['settings']) for line in _read_part_lines(path)
                  if 'settings' in line]
    for path, old in found:
        diff = {k: (old.get(k), v) for k, v in settings.items()
                if old.get(k) != v and k not in INFORMATIONAL}
        if diff:
            changes = ', '.join(f'{k}: {a!r} -> {b!r}'
                                for k, (a, b) in sorted(diff.items()))
            raise ValueError(
                f'{out_dir} holds images made with other settings ({path}: '
                f'{changes}); use a new --out-dir, or the old settings to '
                'resume')


def open_part(out_dir: str, rank: int, settings: Dict):
    """Open the rank's part for appending and write a settings line."""
    path = part_path(out_dir, rank)
    ends_cleanly = True
    if osp.isfile(path) and osp.getsize(path):
        with open(path, 'rb') as f:
            f.seek(-1, os.SEEK_END)
            ends_cleanly = f.read(1) == b'\n'
    part = open(path, 'a', encoding='utf-8')
    if not ends_cleanly:  # end the line a killed writer cut short
        part.write('\n')
    part.write(json.dumps(dict(settings=settings)) + '\n')
    part.flush()
    return part


def merge_manifest(out_dir: str, ann_file: str, settings: Dict,
                   pairs: Sequence[Tuple[str, str]], bad: Sequence[Dict], *,
                   batch_size: int) -> Dict:
    """Write ``manifest.json`` from all records, then drop the parts.

    Only images whose file exists with the recorded size are listed, in
    annotation order, so the manifest is the same whatever the number of
    ranks or restarts that produced the folder.
    """
    records = load_records(out_dir)
    images = []
    for image_id, _ in pairs:
        record = records.get(image_id)
        if record is None:
            continue
        path = osp.join(out_dir, record['file'])
        if osp.isfile(path) and osp.getsize(path) == record['bytes']:
            images.append(record)
    manifest = dict(format=FORMAT, annotation=osp.realpath(ann_file),
                    settings=settings, batch_size=batch_size,
                    num_captions=len(pairs), num_images=len(images),
                    complete=len(images) == len(pairs),
                    skipped_bad=list(bad), images=images)
    atomic_write_json(osp.join(out_dir, MANIFEST), manifest)
    for path in glob.glob(osp.join(out_dir, PART_GLOB)):
        os.remove(path)
    return manifest


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return buffer.getvalue()


def _png_verifies(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # any decoding failure means "regenerate"
        return False


def image_is_done(image_id: str, out_dir: str, records: Dict[str, Dict],
                  verify_sha: bool) -> Tuple[bool, Optional[Dict]]:
    """Whether an image can be skipped, and a record if it had none.

    Args:
        image_id (str): The image.
        out_dir (str): Synthesis output root.
        records (dict): Known records (:func:`load_records`).
        verify_sha (bool): Compare the sha256 of recorded files, not only
            their size.

    Returns:
        tuple: ``(done, new_record)``; ``new_record`` is set for a valid
        file that has no record yet.
    """
    rel = f'{IMAGE_DIR}/{image_id}.png'
    path = osp.join(out_dir, rel)
    if not osp.isfile(path):
        return False, None
    record = records.get(image_id)
    if record is not None and not verify_sha:
        return os.path.getsize(path) == record['bytes'], None
    if record is not None:
        with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        return digest == record['sha256'], None
    # Written (atomically) but killed before its manifest line.
    if not _png_verifies(path):
        return False, None
    with open(path, 'rb') as f:
        data = f.read()
    return True, dict(image_id=image_id, file=rel, bytes=len(data),
                      sha256=hashlib.sha256(data).hexdigest())


def write_image(out_dir: str, image_id: str, image, seed: int) -> Dict:
    """Write ``images/<image_id>.png`` atomically; return its record."""
    rel = f'{IMAGE_DIR}/{image_id}.png'
    path = osp.join(out_dir, rel)
    data = _png_bytes(image)
    try:
        atomic_write_bytes(path, lambda f: f.write(data))
    except OSError as err:
        raise disk_full_error(
            err, path, 'free space and re-run the same command: finished '
            'images are kept and skipped') from err
    return dict(image_id=image_id, file=rel, bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(), seed=seed)
