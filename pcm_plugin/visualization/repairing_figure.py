"""A picture of SynC re-pairing: a caption, its own synthetic image and
the image the refinement gave it instead (``tools/refine_pairs.py
--image-dir``)."""
import json
import os.path as osp
import textwrap
from typing import Dict, List, Optional

from PIL import Image

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


def find_image(image_dir: str, image_id: str,
               file_names: Dict[str, str]) -> Optional[str]:
    """The image's ``file_name`` under ``image_dir`` if the annotations
    name one, else ``<image_dir>/<image_id>.png|.jpg|.jpeg``; or None."""
    if image_id in file_names:
        path = osp.join(image_dir, file_names[image_id])
        return path if osp.isfile(path) else None
    for suffix in IMAGE_SUFFIXES:
        path = osp.join(image_dir, f'{image_id}{suffix}')
        if osp.isfile(path):
            return path
    return None


def source_file_names(refined: Dict) -> Dict[str, str]:
    """``image_id -> file_name`` of the annotation file that was refined
    (named in the refined file's metainfo), where its entries have one."""
    source = refined.get('metainfo', {}).get('refined', {}).get('source')
    if not source or not osp.isfile(source):
        return {}
    with open(source, encoding='utf-8') as f:
        entries = json.load(f)['data_list']
    return {str(e['image_id']): e['file_name'] for e in entries
            if e.get('file_name')}


def moved_examples(entries: List[Dict], count: int) -> List[Dict]:
    """The first ``count`` kept captions that changed image, in file
    order (deterministic, not hand-picked)."""
    moved = [e for e in entries
             if str(e['image_id']) != str(e['source_image_id'])]
    return moved[:count]


def draw_repaired_examples(refined_file: str, *, image_dir: str,
                           count: int = 6,
                           out_file: Optional[str] = None) -> Optional[str]:
    """Draw ``count`` re-paired captions: own image left, new image right.

    Args:
        refined_file (str): The refined annotation JSON.
        image_dir (str): Folder of the images (``<image_id>.png|.jpg``).
        count (int): Examples to draw.
        out_file (str, optional): PNG path; ``<refined stem>.examples.png``.

    Returns:
        str | None: The PNG written, None when no caption moved or no
        image file was found.
    """
    # deferred: matplotlib loads only where a figure is drawn
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(refined_file, encoding='utf-8') as f:
        refined = json.load(f)
    file_names = source_file_names(refined)
    rows = []
    for entry in moved_examples(refined['data_list'], count):
        paths = [find_image(image_dir, str(entry[key]), file_names)
                 for key in ('source_image_id', 'image_id')]
        if all(paths):
            rows.append((entry, paths))
    if not rows:
        return None
    out_file = out_file or f'{osp.splitext(refined_file)[0]}.examples.png'
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3.2 * len(rows)),
                             squeeze=False)
    for (entry, paths), pair in zip(rows, axes):
        for ax, path, title in zip(pair, paths, ('its own image', (
                f'SynC: image {entry["image_id"]} '
                f'(score {entry["sync_score"]:.2f})'))):
            with Image.open(path) as image:
                ax.imshow(image.convert('RGB'))
            ax.set_title(title, fontsize=8)
            ax.axis('off')
        pair[0].text(0, -0.08, textwrap.fill(str(entry['caption']), 70),
                     transform=pair[0].transAxes, fontsize=7, va='top')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file
