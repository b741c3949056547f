"""Dry run of the whole data path on 60 real captions, with tiny models.

    make dry-run
    python tools/data/dry_run.py --out work_dirs/dry_run
    python tools/data/dry_run.py --out work_dirs/mine --captions mine.csv

captions -> vocabulary -> synthesis -> features -> concepts -> SynC ->
training -> test -> caption, each stage run as a user runs it: the tool
under tools/ in a fresh process, its command line and output kept in
``OUT/logs/<stage>.log``. The downloaded weights are replaced by tiny random
models (``pcm_plugin.testing``: a Stable Diffusion pipeline, an open_clip
ViT and a sentence encoder) and the real val/test photos by random-pixel
stand-ins, so the run takes minutes on a CPU and needs no network. The
images, scores and captions mean nothing; what the run shows is that every
tool reads what the previous one wrote. It ends with the same commands for
real data.

Processes, not the tools' ``main`` functions called in this process: a
stage then runs exactly the command a user types (argument parsing,
environment defaults, exit code and one-line errors included) and shares
no state with the others (open_clip's model registry, mmengine's scopes,
logging handlers); the cost is one package import per stage.
"""
import argparse
import json
import logging
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, NamedTuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a clone without installing
import tools._cli  # noqa: E402,F401  the tools' start-up
CAPTIONS = osp.join(REPO, 'pcm_plugin', 'resources',
                    'dry_run_captions.csv')
MARKER = 'dry_run.json'  # says a folder is ours to replace on a rerun
CLIP = 'pcm-tiny-vit-b32'
EPOCHS = 40  # ~5 iterations each: enough for the captions to be sentences


class DryRunError(Exception):
    """A stage failed; the message names its log."""


class Stage(NamedTuple):
    """One step of the data path: how the dry run does it, and the command
    that does it on real data."""
    name: str
    run: Callable[['DryRun'], str]  # returns a one-line summary
    real: str


class DryRun:
    """The dry run's folders and the tools it calls.

    Args:
        out (str): Output folder (everything goes under it).
        captions (str): Caption CSV (``image,caption``) or COCO JSON.
    """

    def __init__(self, out: str, captions: str):
        self.out, self.captions = osp.abspath(out), osp.abspath(captions)
        self.data = osp.join(self.out, 'data')
        self.models = osp.join(self.out, 'models')
        self.config = osp.join(self.out, 'pcm_dry_run.py')
        self.work = osp.join(self.out, 'work')
        self.log_name = 'run'

    def path(self, *parts: str) -> str:
        return osp.join(self.data, *parts)

    def ann(self, split: str) -> str:
        return self.path('annotations', f'{split}.json')

    def clip_args(self) -> List[str]:
        folder = osp.join(self.models, 'clip')
        return ['--clip-model', CLIP,
                '--model-config', osp.join(folder, f'{CLIP}.json'),
                '--clip-checkpoint', osp.join(folder, f'{CLIP}.pt')]

    def tool(self, script: str, *args: str) -> str:
        """Run ``tools/<script> args`` in a fresh process; its stdout."""
        cmd = [sys.executable, osp.join('tools', script), *args]
        log = osp.join(self.out, 'logs', f'{self.log_name}.log')
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        with open(log, 'a', encoding='utf-8') as f:
            f.write(f'$ {" ".join(cmd)}\n{proc.stdout}{proc.stderr}\n')
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or ['(no output)']
            raise DryRunError(f'{script} exited {proc.returncode}: '
                              f'{lines[-1]} (command and output: {log})')
        return proc.stdout


def _read_json(path: str):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def convert_captions(run: DryRun) -> str:
    run.tool('data/convert_captions.py', run.captions, '--out', run.data,
             '--split', 'rest,3,3', '--dataset', 'dry_run')
    counts = [_read_json(run.ann(s))['metainfo']['num_captions']
              for s in ('train', 'val', 'test')]
    return '{} train / {} val / {} test captions'.format(*counts)


def build_vocabulary(run: DryRun) -> str:
    run.tool('build_vocab.py', run.ann('train'), '--out',
             run.path('tokenizer.json'), '--min-count', '1')
    words = len(_read_json(run.path('tokenizer.json'))['model']['vocab'])
    return f'{words} tokens'


def build_stand_ins(run: DryRun) -> str:
    """Tiny random models instead of downloaded weights, random pixels
    instead of the val/test photos (built here: no tool makes them)."""
    import numpy as np
    from PIL import Image

    from pcm_plugin.testing import build_tiny_open_clip, build_tiny_sd_pipeline
    from pcm_plugin.testing.tiny_sentence import build_tiny_sentence_model
    build_tiny_sd_pipeline(osp.join(run.models, 'tiny-sd'))
    # open_clip warns that the model it creates has random weights: the
    # point here.
    logging.getLogger().setLevel(logging.ERROR)
    build_tiny_open_clip(osp.join(run.models, 'clip'), CLIP)
    words = {word for entry in _read_json(run.ann('train'))['data_list']
             for word in entry['caption'].lower().split()}
    build_tiny_sentence_model(osp.join(run.models, 'sentence'), sorted(words))
    photos = 0
    for split in ('val', 'test'):
        folder = run.path('photos', split)
        os.makedirs(folder, exist_ok=True)
        for entry in _read_json(run.ann(split))['data_list']:
            rng = np.random.default_rng(int(entry['image_id']))
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), np.uint8)).save(
                osp.join(folder, entry['file_name']))
            photos += 1
    return f'random Stable Diffusion, CLIP, sentence encoder; {photos} photos'


def synthesize(run: DryRun) -> str:
    out = run.tool('synthesize.py', run.ann('train'), '--model-dir',
                   osp.join(run.models, 'tiny-sd'), '--out-dir',
                   run.path('synthetic'), '--steps', '2', '--size', '64',
                   '--batch-size', '8', '--no-progress')
    summary = json.loads(out.split('summary: ')[1])
    return f'{summary["generated"]} images'


def extract_features(run: DryRun) -> str:
    image_dirs = dict(train=run.path('synthetic', 'images'),
                      val=run.path('photos', 'val'),
                      test=run.path('photos', 'test'))
    counts = []
    for split, image_dir in image_dirs.items():
        run.tool('extract_features.py', run.ann(split), '--image-dir',
                 image_dir, '--out-dir', run.path('features', split),
                 *run.clip_args(), '--workers', '0', '--no-progress')
        counts.append(_read_json(run.path('features', split,
                                          'index.json'))['num_items'])
    index = _read_json(run.path('features', 'train', 'index.json'))
    return ('{} train + {} val + {} test images'.format(*counts)
            + ' -> {} x {} patches'.format(*index['patch_shape'])
            + f' + {index["global_dim"]}-d global')


def encode_concepts(run: DryRun) -> str:
    from pcm_plugin.models.concept_bank import load_concept_bank
    run.tool('build_concepts.py', 'encode', *run.clip_args(), '--out',
             run.path('concepts.npz'))
    words, embeds, _ = load_concept_bank(run.path('concepts.npz'))
    return f'{len(words)} concept words -> {embeds.shape[1]}-d embeddings'


def refine_pairs(run: DryRun) -> str:
    out = run.tool('refine_pairs.py', run.ann('train'), '--features',
                   run.path('features', 'train'), '--out',
                   run.ann('train_sync'), '--sentence-model',
                   osp.join(run.models, 'sentence'), *run.clip_args()[2:],
                   '--no-progress')
    summary = json.loads(out.split('summary: ')[1])
    return f'kept {summary["kept"]} of {summary["captions"]} captions'


CONFIG = '''\
# Written by tools/data/dry_run.py: configs/pcm_coco.py at toy size on the
# dry run's data. patch_dim, global_dim and num_patches are None:
# tools/train.py reads them from the feature stores' index.json.
_base_ = [{base!r}]
data = {data!r}
clip_model = dict(
    name={clip!r},
    checkpoint={models!r} + '/clip/{clip}.pt',
    model_config={models!r} + '/clip/{clip}.json')
small = dict(embed_dim=64, num_layers=1, num_heads=2, ffn_dim=128)
model = dict(
    tokenizer=data + '/tokenizer.json',
    mixup=dict(patch_dim=None, global_dim=None, num_patches=None,
               embed_dim=64, concept_bank=data + '/concepts.npz',
               clip_head=clip_model['checkpoint']),
    encoder=small,
    decoder=small)
param_scheduler = [
    dict(type='NoamLR', model_dim=64, warmup=20, factor=0.1, by_epoch=False)]
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval={epochs}, save_best=None))
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=data + '/annotations/train_sync.json',
                 feature_dir=data + '/features/train'))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=data + '/annotations/val.json',
                 feature_dir=data + '/features/val'))
test_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=data + '/annotations/test.json',
                 feature_dir=data + '/features/test'))
val_evaluator = dict(ann_file=data + '/annotations/val_gt.json',
                     scorers=('bleu', 'cider'))
test_evaluator = dict(ann_file=data + '/annotations/test_gt.json',
                      scorers=('bleu', 'cider'))
'''


def train(run: DryRun) -> str:
    with open(run.config, 'w', encoding='utf-8') as f:
        f.write(CONFIG.format(
            base=osp.join(REPO, 'configs', 'pcm_coco.py'), data=run.data,
            models=run.models, clip=CLIP, epochs=EPOCHS))
    run.tool('train.py', run.config, '--work-dir', run.work)
    return f'{EPOCHS} epochs -> {osp.relpath(checkpoint(run), run.out)}'


def checkpoint(run: DryRun) -> str:
    return osp.join(run.work, f'epoch_{EPOCHS}.pth')


def test(run: DryRun) -> str:
    metrics = osp.join(run.out, 'test_metrics.json')
    run.tool('test.py', run.config, checkpoint(run), '--work-dir', run.work,
             '--out', metrics)
    return ', '.join(f'{k} {v:.3f}' for k, v in _read_json(metrics).items())


def caption(run: DryRun) -> str:
    out = osp.join(run.out, 'captions.json')
    run.tool('caption_image.py', run.config, checkpoint(run),
             run.path('photos', 'test'), '--out', out)
    captions = _read_json(out)
    first = next(iter(captions.values()), '')
    return f'{len(captions)} test photos, e.g. "{first}"'


STAGES = (
    Stage('captions', convert_captions,
          'python tools/data/convert_karpathy.py data/dataset_coco.json '
          '--out data/coco --dataset coco'),
    Stage('vocabulary', build_vocabulary,
          'python tools/build_vocab.py data/coco/annotations/train.json '
          '--out data/coco/tokenizer.json'),
    Stage('stand-ins', build_stand_ins,
          '# download Stable Diffusion (data/sd-v1-5) and CLIP '
          '(data/clip/ViT-B-32.pt); real photos in data/coco/images'),
    Stage('synthesis', synthesize,
          'torchrun --nproc_per_node 8 tools/synthesize.py '
          'data/coco/annotations/train.json --model-dir data/sd-v1-5 '
          '--out-dir data/coco/synthetic'),
    Stage('features', extract_features,
          'torchrun --nproc_per_node 8 tools/extract_features.py '
          'data/coco/annotations/train.json --image-dir '
          'data/coco/synthetic/images --out-dir '
          'data/coco/features/ViT-B-32/train_sd --clip-model ViT-B-32 '
          '--clip-checkpoint data/clip/ViT-B-32.pt\n'
          '  (and val.json, test.json with --image-dir data/coco/images '
          '--out-dir data/coco/features/ViT-B-32/val, .../test)'),
    Stage('concepts', encode_concepts,
          'python tools/build_concepts.py encode --clip-model ViT-B-32 '
          '--clip-checkpoint data/clip/ViT-B-32.pt '
          '--out data/concepts/coco446_ViT-B-32.npz'),
    Stage('SynC', refine_pairs,
          'torchrun --nproc_per_node 8 tools/refine_pairs.py '
          'data/coco/annotations/train.json --features '
          'data/coco/features/ViT-B-32/train_sd '
          '--out data/coco/annotations/train_sync.json'),
    Stage('training', train,
          'bash tools/dist_train.sh configs/pcm_coco.py 8 --cfg-options '
          'train_dataloader.dataset.ann_file='
          'data/coco/annotations/train_sync.json'),
    Stage('test', test,
          'python tools/test.py configs/pcm_coco.py '
          'work_dirs/pcm_coco/best_CIDEr_epoch_N.pth --out metrics.json'),
    Stage('caption', caption,
          'python tools/caption_image.py configs/pcm_coco.py '
          'work_dirs/pcm_coco/best_CIDEr_epoch_N.pth photos/ '
          '--out captions.json'),
)


def prepare_out(out: str) -> None:
    """Start from an empty ``out``; replace only a folder a dry run made."""
    if osp.isdir(out) and os.listdir(out):
        if not osp.isfile(osp.join(out, MARKER)):
            raise DryRunError(f'--out {out} exists and was not made by a '
                              'dry run; choose a new folder')
        shutil.rmtree(out)
    os.makedirs(osp.join(out, 'logs'))
    with open(osp.join(out, MARKER), 'w') as f:
        json.dump(dict(stages=[s.name for s in STAGES]), f)


def _activate_hint() -> str:
    """How to get this interpreter's environment for the printed commands
    (`python` there is the environment's, e.g. the `.venv` make built)."""
    if sys.prefix == sys.base_prefix:
        return ''
    venv = osp.relpath(sys.prefix)
    if venv.startswith('..'):  # not under the working directory
        venv = sys.prefix
    return f', after `source {osp.join(venv, "bin", "activate")}`'


def dry_run(out: str, captions: str, *, print_fn=print) -> Dict[str, float]:
    """Run every stage, printing one line each; return their seconds."""
    run = DryRun(out, captions)
    if not osp.isfile(run.captions):
        raise DryRunError(f'--captions {captions} not found')
    prepare_out(run.out)
    print_fn(f'dry run of the data path in {run.out} (tiny random models: '
             'the numbers mean nothing)')
    seconds = {}
    for number, stage in enumerate(STAGES, 1):
        run.log_name = stage.name
        start = time.perf_counter()
        summary = stage.run(run)
        seconds[stage.name] = time.perf_counter() - start
        print_fn(f'[{number:2d}/{len(STAGES)}] {stage.name:<10} '
                 f'{seconds[stage.name]:6.1f} s  {summary}')
    print_fn(f'done in {sum(seconds.values()):.0f} s; logs in '
             f'{osp.join(run.out, "logs")}\n\nOn real data (README, '
             'docs/data.md)' + _activate_hint() + ':')
    for stage in STAGES:
        print_fn(f'  {stage.real}')
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/dry_run',
                        help='output folder (default work_dirs/dry_run; '
                        'a previous dry run there is replaced)')
    parser.add_argument('--captions', default=CAPTIONS,
                        help='caption CSV (image,caption) or COCO caption '
                        'JSON with at least 8 images (default: 60 captions '
                        'of 20 everyday scenes, '
                        'pcm_plugin/resources/dry_run_captions.csv)')
    args = parser.parse_args(argv)
    try:
        dry_run(args.out, args.captions,
                print_fn=lambda line: print(line, flush=True))
    except DryRunError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
