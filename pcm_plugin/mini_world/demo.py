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

from mmengine.config import Config

from .prepare import WorldSettings, prepare_world

METRIC_KEYS = ('Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr')


def world_config(config: str, world: Dict, *, work_dir: str,
                 train_set: str = 'synth_d030',
                 max_epochs: Optional[int] = None,
                 seed: Optional[int] = None) -> Config:
    """Point a mini-world config at a prepared world's files.

    Args:
        config (str): e.g. ``configs/pcm_shapes.py``.
        world (dict): What :func:`prepare_world` returned.
        work_dir (str): Work directory of the run.
        train_set (str): Feature store to train on: ``synth_dXXX`` (a
            defect rate) or ``real_train`` (the upper bound).
        max_epochs (int, optional): Override the config's epochs.
        seed (int, optional): Override the random seed.

    Returns:
        Config: ready for ``Runner.from_cfg``.
    """
    cfg = Config.fromfile(config)
    root = world['root']

    def path(rel: str) -> str:
        return osp.join(root, rel)

    ann, feats = world['annotations'], world['features']
    if train_set not in feats:
        raise KeyError(f'feature store {train_set!r} is not in the world '
                       f'({sorted(feats)}); prepare it first (e.g. '
                       '`python tools/mini_world/prepare.py --defect-rates '
                       '0 0.3 0.6 --real-train`)')
    cfg.work_dir = work_dir
    cfg.model.tokenizer = path(world['tokenizer'])
    cfg.model.mixup.concept_bank = path(world['concept_bank'])
    cfg.model.mixup.clip_head = path(world['clip']['checkpoint'])
    cfg.clip_model = dict(name=world['clip']['name'],
                          checkpoint=path(world['clip']['checkpoint']),
                          model_config=path(world['clip']['config']))
    cfg.train_dataloader.dataset.update(ann_file=path(ann['train']),
                                        feature_dir=path(feats[train_set]))
    for split in ('val', 'test'):
        cfg[f'{split}_dataloader'].dataset.update(
            ann_file=path(ann[split]), feature_dir=path(feats[split]))
        cfg[f'{split}_evaluator'].ann_file = path(ann[f'{split}_gt'])
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = max_epochs
    if seed is not None:
        cfg.randomness = dict(seed=seed, deterministic=False)
    return cfg


def run_digest(cfg: Config) -> str:
    """What a finished run's result depends on: its config and its inputs.

    The config text alone is not enough: re-preparing the world (say with a
    new mini CLIP) rewrites the features, tokenizer, concept bank and CLIP
    head at the same paths, and a model trained on the old ones must not be
    reused. The training features enter through their ``done.json`` stamp
    (which holds the digests of everything upstream) or, outside the mini
    world, their ``index.json``.
    """
    import hashlib

    from pcm_plugin.utils.fileio import file_sha256
    features = cfg.train_dataloader.dataset.feature_dir
    stamp = osp.join(features, 'done.json')
    inputs = [stamp if osp.isfile(stamp) else osp.join(features, 'index.json'),
              cfg.model.tokenizer, cfg.model.mixup.concept_bank,
              cfg.model.mixup.clip_head]
    digest = hashlib.sha256(cfg.pretty_text.encode('utf-8'))
    for path in inputs:
        digest.update(file_sha256(path).encode() if osp.isfile(path) else
                      f'missing {path}'.encode())
    return digest.hexdigest()[:16]


def train_and_test(cfg: Config, *, retrain: bool = False,
                   predictions: Optional[str] = None) -> Dict[str, float]:
    """Train unless an identical finished run exists, then test.

    Identical means the same :func:`run_digest` (config and input files).

    Returns:
        dict: Test metrics of the last checkpoint.
    """
    from mmengine.runner import Runner

    import pcm_plugin  # noqa: F401
    os.makedirs(cfg.work_dir, exist_ok=True)
    stamp_path = osp.join(cfg.work_dir, 'demo_done.json')
    digest = run_digest(cfg)
    last = osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    stamp = None
    if osp.isfile(stamp_path):
        with open(stamp_path) as f:
            stamp = json.load(f)
    if retrain or stamp is None or stamp.get('config') != digest or \
            not osp.isfile(last):
        cfg.experiment_name = f'train_{time.strftime("%Y%m%d_%H%M%S")}'
        Runner.from_cfg(cfg.copy()).train()
        with open(stamp_path, 'w') as f:
            json.dump(dict(config=digest), f)
    else:
        print(f'[demo] reusing the trained model in {cfg.work_dir} '
              '(same config and data; --retrain to train again)')
    test_cfg = cfg.copy()
    test_cfg.load_from = last
    test_cfg.experiment_name = f'test_{time.strftime("%Y%m%d_%H%M%S")}'
    if predictions:
        test_cfg.test_evaluator = [
            test_cfg.test_evaluator,
            dict(type='DumpCaptions', out_file=predictions)]
    return Runner.from_cfg(test_cfg).test()


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
    metrics = train_and_test(cfg, retrain=retrain, predictions=predictions)
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
