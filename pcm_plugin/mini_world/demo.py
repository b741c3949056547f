"""``make demo``: prepare the mini world, train PCM-Net, evaluate, show.

Everything runs on CPU: the world is cached under ``data/mini_world`` and a
finished training run is reused unless its config changed (``--retrain``
forces a new one).
"""
import json
import os
import os.path as osp
import textwrap
import time
from typing import Dict, List, Optional, Sequence

from .prepare import WorldSettings, prepare_world
from .runs import train_and_test, world_config

METRIC_KEYS = ('Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr')


def render_predictions(predictions: str, test_ann: str, image_dir: str,
                       out_png: str, *, num: int = 8,
                       scale: int = 3) -> str:
    """A grid of test images with predicted and reference captions."""
    from PIL import Image, ImageDraw, ImageFont
    with open(predictions) as f:
        preds = {str(p['image_id']): p['caption'] for p in json.load(f)}
    with open(test_ann) as f:
        entries = json.load(f)['data_list'][:num]
    font = ImageFont.load_default()
    tiles: List[Image.Image] = []
    for entry in entries:
        image = Image.open(_image_path(image_dir, entry)).convert('RGB')
        image = image.resize((image.width * scale, image.height * scale),
                             Image.NEAREST)
        lines = [(line, colour) for text, colour in (
            ('pred: ' + preds.get(str(entry['image_id']), '?'), (200, 0, 0)),
            ('ref:  ' + entry['captions'][0], (0, 0, 0)))
            for line in textwrap.wrap(text, 58)[:2]]
        tile = Image.new('RGB', (max(image.width, 360),
                                 image.height + 8 + 14 * len(lines)), 'white')
        tile.paste(image, ((tile.width - image.width) // 2, 0))
        draw = ImageDraw.Draw(tile)
        for k, (line, colour) in enumerate(lines):
            draw.text((4, image.height + 4 + 14 * k), line, fill=colour,
                      font=font)
        tiles.append(tile)
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    w, h = tiles[0].size[0], max(t.height for t in tiles)
    grid = Image.new('RGB', (cols * w, rows * h), 'white')
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % cols) * w, (i // cols) * h))
    os.makedirs(osp.dirname(osp.abspath(out_png)), exist_ok=True)
    grid.save(out_png)
    return out_png


def _image_path(image_dir: str, entry: Dict) -> str:
    for name in (entry.get('file_name'), f'{entry["image_id"]}.png',
                 f'test/{entry["image_id"]}.png'):
        if name and osp.isfile(osp.join(image_dir, name)):
            return osp.join(image_dir, name)
    raise FileNotFoundError(f'no image for test id {entry["image_id"]} '
                            f'under {image_dir}')


def run_demo(*, config: str = 'configs/pcm_shapes.py',
             work_dir: str = 'work_dirs/demo',
             settings: Optional[WorldSettings] = None,
             max_epochs: Optional[int] = None,
             retrain: bool = False) -> Dict[str, float]:
    """The whole demo; returns the test metrics (also printed)."""
    start = time.time()
    world = prepare_world(settings or WorldSettings())
    rate = (settings or WorldSettings()).defect_rates[0]
    from .prepare import synth_name
    cfg = world_config(config, world, work_dir=work_dir,
                       train_set=synth_name(rate), max_epochs=max_epochs)
    predictions = osp.join(work_dir, 'test_predictions.json')
    metrics = train_and_test(cfg, retrain=retrain, predictions=predictions,
                             quiet=True)
    png = render_predictions(
        predictions, osp.join(world['root'], world['annotations']['test']),
        osp.join(world['root'], world['images']['real']),
        osp.join(work_dir, 'test_predictions.png'))
    print('\n[demo] PCM-Net trained on synthetic renders (defect rate '
          f'{rate}), tested on the real test renders:')
    print(f'  {" / ".join(METRIC_KEYS)}: {format_metrics(metrics)}')
    print(f'[demo] captions: {predictions}\n[demo] picture:  {png}')
    print(f'[demo] done in {time.time() - start:.0f} s')
    return metrics


def format_metrics(metrics: Dict[str, float],
                   keys: Sequence[str] = METRIC_KEYS) -> str:
    return ' / '.join(f'{100 * metrics[k]:.1f}' for k in keys)
