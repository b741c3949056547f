"""Does a trained PCM-Net use its concept tokens on real renders?

At test time PCM-Net appends the selected textual (concept) tokens to the
visual tokens (docs/method.md §3.5). Re-testing a trained ``pcm`` / ``full``
ablation cell with ``PCMMixup(mode='none')`` — the same weights, the
textual tokens left out — measures what those tokens contribute at
inference: a model that ignores them scores the same either way.
"""
import copy
import json
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

from pcm_plugin.evaluation.caption_metric import PAPER_SCALE

from .ablation import (
    SCALE_KEY,
    evaluator_scale,
    paper_scale,
    read_results,
    variant_config,
)
from .names import DEFAULT_ROOT
from .world import load_world


def retest_without_concept_tokens(cfg, checkpoint: str) -> Dict[str, float]:
    """Test metrics of ``checkpoint`` with the mix-up switched off."""
    from mmengine.runner import Runner

    import pcm_plugin  # noqa: F401
    cfg = copy.deepcopy(cfg)  # Config.copy() shares the nested dicts
    cfg.model.mixup.mode = 'none'
    cfg.load_from = checkpoint
    cfg.test_evaluator.scorers = ('bleu', 'rouge', 'cider')  # no JVM
    cfg.experiment_name = f'probe_{time.strftime("%Y%m%d_%H%M%S")}'
    cfg.log_level = 'WARNING'  # one table, not a config dump per cell
    return Runner.from_cfg(cfg).test()


def probe_concept_tokens(*, config_dir: str = 'projects/mini_world/configs',
                         root: str = DEFAULT_ROOT,
                         work_root: str = 'work_dirs/ablation',
                         variants: Sequence[str] = ('pcm', 'full'),
                         max_epochs: Optional[int] = None) -> List[Dict]:
    """Re-test every finished cell of ``variants`` without concept tokens.

    ``max_epochs``: the sweep's ``--epochs`` (its cells' last checkpoint
    is ``epoch_<max_epochs>.pth``); None for the config's.

    Results are appended to ``<work_root>/probe.jsonl`` (one line per cell;
    finished cells are skipped on a rerun).

    Returns:
        list[dict]: ``variant``, ``rate``, ``seed``, ``CIDEr_with`` (the
        ablation's number) and ``CIDEr_without``, on the row's
        ``metric_scale``: 100 for rows written now, none (×1) in rows
        written before the metric reported ×100 (read them with
        :func:`~.ablation.paper_scale`).
    """
    out = osp.join(work_root, 'probe.jsonl')
    world = load_world(root)  # as prepared: nothing is rebuilt
    name = world.get('name', 'world')
    cells = [r for r in read_results(osp.join(work_root, 'results.jsonl'))
             if r['variant'] in variants and r.get('world', 'world') == name]
    done = {(r.get('world', 'world'), r['variant'], r['rate'], r['seed'])
            for r in read_results(out)}
    for row in cells:
        key = (name, row['variant'], row['rate'], row['seed'])
        if key in done:
            continue
        cfg = variant_config(config_dir, world, row['variant'],
                             rate=row['rate'], seed=row['seed'],
                             work_root=work_root, max_epochs=max_epochs)
        checkpoint = osp.join(cfg.work_dir,
                              f'epoch_{cfg.train_cfg.max_epochs}.pth')
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'{checkpoint} not found for the {key} row of '
                f'{work_root}/results.jsonl; rerun that cell with '
                'projects/mini_world/tools/ablation.py (after deleting its '
                'row) or '
                'leave its variant out with --variants')
        metrics = retest_without_concept_tokens(cfg, checkpoint)
        without = {'CIDEr': float(metrics['CIDEr']),
                   SCALE_KEY: evaluator_scale(cfg)}
        with open(out, 'a') as f:
            f.write(json.dumps({
                'world': name, 'variant': row['variant'],
                'rate': row['rate'], 'seed': row['seed'],
                SCALE_KEY: PAPER_SCALE,
                'CIDEr_with': paper_scale(row, 'CIDEr'),
                'CIDEr_without': paper_scale(without, 'CIDEr')}) + '\n')
        done.add(key)
    return read_results(out)
