"""One mini-world training run, as the demo, the ablation and the probe
run it: a config pointed at a prepared world, trained unless an identical
finished run exists, then tested."""
import contextlib
import json
import os
import os.path as osp
import time
from typing import Dict, Optional

from mmengine.config import Config


def world_config(config: str, world: Dict, *, work_dir: str,
                 train_set: str = 'synth_d030',
                 max_epochs: Optional[int] = None,
                 seed: Optional[int] = None,
                 train_ann: Optional[str] = None) -> Config:
    """Point a mini-world config at a prepared world's files.

    The iteration-based learning-rate schedule is fitted to the training
    set: it ends (cosine at 0) at the run's last iteration whatever the
    number of pairs (a SynC-refined set has 10 % fewer) and epochs.

    Args:
        config (str): e.g. ``projects/mini_world/configs/pcm_shapes.py``.
        world (dict): What :func:`prepare_world` returned.
        work_dir (str): Work directory of the run.
        train_set (str): Feature store to train on: ``synth_dXXX`` (a
            defect rate) or ``real_train`` (the upper bound).
        max_epochs (int, optional): Override the config's epochs.
        seed (int, optional): Override the random seed.
        train_ann (str, optional): Another train annotation file (e.g.
            SynC-refined pairs) instead of the world's.

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
                       '`python projects/mini_world/tools/prepare.py '
                       '--defect-rates 0 0.3 0.6 --real-train`)')
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
        # A run's dumped config may list more evaluators (the demo adds
        # DumpCaptions): every one that reads references gets the world's.
        evaluators = cfg[f'{split}_evaluator']
        for evaluator in (evaluators if isinstance(evaluators, list)
                          else [evaluators]):
            if 'ann_file' in evaluator:
                evaluator.ann_file = path(ann[f'{split}_gt'])
    if train_ann is not None:
        cfg.train_dataloader.dataset.ann_file = train_ann
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = max_epochs
    fit_schedule(cfg)
    if seed is not None:
        cfg.randomness = dict(seed=seed, deterministic=False)
    return cfg


def fit_schedule(cfg: Config) -> None:
    """End the last iteration-based scheduler at the last iteration.

    The world's schedule is warm-up + cosine to 0 over ``max_epochs``
    epochs, by the mini-world benchmark's design: the tested last
    checkpoint must be the converged end of the schedule, not a snapshot
    at some lr.
    """
    import json
    ann_file = cfg.train_dataloader.dataset.ann_file
    if not osp.isfile(ann_file):  # the dataset names the missing file
        return
    with open(ann_file, encoding='utf-8') as f:
        num_pairs = len(json.load(f)['data_list'])
    iters = num_pairs // cfg.train_dataloader.batch_size  # drop_last
    last = cfg.param_scheduler[-1]
    end = cfg.train_cfg.max_epochs * iters
    # Runs shorter than the warm-up (smoke tests) keep the schedule as is.
    if not last.get('by_epoch', True) and end > last.get('begin', 0):
        last['end'] = end


def run_digest(cfg: Config) -> str:
    """What a finished run's result depends on: its config and its inputs.

    The config text alone is not enough: re-preparing the world (say with a
    new mini CLIP) rewrites the features, tokenizer, concept bank and CLIP
    head at the same paths, and a model trained on the old ones must not be
    reused. The training features enter through their ``done.json`` stamp
    (which holds the digests of everything upstream) or, outside the mini
    world, their ``index.json``; the train annotation file by its content
    (a SynC-refined one is rewritten at the same path).
    """
    import hashlib

    from pcm_plugin.utils.fileio import file_sha256
    features = cfg.train_dataloader.dataset.feature_dir
    stamp = osp.join(features, 'done.json')
    inputs = [stamp if osp.isfile(stamp) else osp.join(features, 'index.json'),
              cfg.train_dataloader.dataset.get('ann_file', ''),
              cfg.model.tokenizer, cfg.model.mixup.concept_bank,
              cfg.model.mixup.clip_head]
    digest = hashlib.sha256(cfg.pretty_text.encode('utf-8'))
    for path in inputs:
        digest.update(file_sha256(path).encode() if osp.isfile(path) else
                      f'missing {path}'.encode())
    return digest.hexdigest()[:16]


def train_and_test(cfg: Config, *, retrain: bool = False,
                   predictions: Optional[str] = None,
                   quiet: bool = False) -> Dict[str, float]:
    """Train unless an identical finished run exists, then test.

    Identical means the same :func:`run_digest` (config and input files).

    Args:
        cfg (Config): From :func:`world_config`.
        retrain (bool): Train even if an identical run exists.
        predictions (str, optional): Also dump the test captions here.
        quiet (bool): A progress line on the console instead of mmengine's
            output, which stays in the run's log file (the demo).

    Returns:
        dict: Test metrics of the last checkpoint.
    """
    from mmengine.runner import Runner

    import pcm_plugin  # noqa: F401

    from .console import ConsoleProgressHook, quiet_console
    console = quiet_console if quiet else contextlib.nullcontext

    def build(cfg):
        # The hook is given to the runner, not written into the config:
        # the config the run dumps must load where the lab is not imported
        # (tools/test.py, publish_model.py, a one-file release).
        runner = Runner.from_cfg(cfg)
        if quiet:
            runner.register_hook(ConsoleProgressHook())
        return runner
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
        with console():
            runner = build(cfg.copy())
            runner.train()
        _log_where(runner, quiet, 'training')
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
    with console():
        runner = build(test_cfg)
        metrics = runner.test()
    _log_where(runner, quiet, 'test')
    return metrics


def _log_where(runner, quiet: bool, phase: str) -> None:
    if quiet:  # mmengine's output went to its log file only
        print(f'[demo] {phase} log: {runner.log_dir}')
