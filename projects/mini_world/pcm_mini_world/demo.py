"""``make demo``: prepare the mini world, train PCM-Net, evaluate, show.

Everything runs on CPU: the world is cached under ``data/mini_world`` and a
finished training run is reused unless its config changed (``--retrain``
forces a new one). The scores are the metric's, ×100 as papers report them.
"""
import json
import os.path as osp
import time
from typing import Dict, Optional, Sequence

from mmengine.config import Config

from .prepare import prepare_world
from .runs import train_and_test, world_config
from .world import WorldSettings, synth_name

METRIC_KEYS = ('Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr')


def render_predictions(predictions: str, test_ann: str, image_dir: str,
                       out_png: str, *, num: int = 8,
                       scale: int = 3) -> str:
    """A grid of test images with predicted and reference captions."""
    from pcm_plugin.visualization.caption_grid import (
        annotation_images,
        draw_caption_grid,
    )
    with open(predictions) as f:
        preds = {str(p['image_id']): p['caption'] for p in json.load(f)}
    images = list(annotation_images(test_ann, image_dir).items())[:num]
    if not images:
        raise FileNotFoundError(f'{test_ann} names no image files')
    return draw_caption_grid([(path, preds.get(i, '?'), ref)
                              for i, (path, ref) in images], out_png,
                             scale=scale)


def demo_config(config: str, world: Dict, *, work_dir: str, rate: float,
                max_epochs: Optional[int] = None) -> Config:
    """The demo's run: ``config`` on the world's synthetic renders of
    ``rate``, validated after every epoch.

    Every epoch's validation gives ``tools/analysis/plot_curves.py`` a CIDEr
    curve of the demo. It does not change what trains: validation draws
    from the global generator (its data loader seeds itself), and the
    config's ``RNGStateHook`` gives the draws back, so the demo ends on
    the weights of a demo validating once (without that hook it would
    not). The ablation cells do not validate: per cell, six decodes of
    the validation renders would only cost time.

    Args:
        config (str): The demo's config.
        world (dict): What :func:`prepare_world` returned.
        work_dir (str): Work directory of the run.
        rate (float): Defect rate of the synthetic training renders.
        max_epochs (int, optional): Override the config's epochs.

    Returns:
        Config: ready for :func:`train_and_test`.
    """
    cfg = world_config(config, world, work_dir=work_dir,
                       train_set=synth_name(rate), max_epochs=max_epochs)
    cfg.train_cfg.val_interval = 1
    return cfg


def run_demo(*, config: str = 'projects/mini_world/configs/pcm_shapes.py',
             work_dir: str = 'work_dirs/demo',
             settings: Optional[WorldSettings] = None,
             max_epochs: Optional[int] = None,
             retrain: bool = False) -> Dict[str, float]:
    """The whole demo; returns the test metrics (also printed)."""
    start = time.time()
    world = prepare_world(settings or WorldSettings())
    rate = (settings or WorldSettings()).defect_rates[0]
    cfg = demo_config(config, world, work_dir=work_dir, rate=rate,
                      max_epochs=max_epochs)
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
    """The metric's numbers as printed: already ×100, one decimal."""
    return ' / '.join(f'{metrics[k]:.1f}' for k in keys)
