"""Run the re-ranking plan (PLAN.md beside this file) on trained cells.

For each cell: choose (w, a) on val with tools/choose_rerank_weight.py,
then test three arms (plain, rerank, length_only) with CIDEr and
CLIPScore through tools/test.py. One JSON row per (cell, arm) is appended
to --out; arms already there are skipped, so a stopped run resumes.
"""
import argparse
import glob
import json
import os.path as osp
import re
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
ARMS = ('plain', 'rerank', 'length_only')


def tool(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)


def cell_config(run: str) -> str:
    """The config dump the ablation wrote into the cell's folder."""
    dumps = [p for p in glob.glob(osp.join(run, '*.py'))
             if not osp.basename(p).startswith('rerank_')]
    if len(dumps) != 1:
        raise FileNotFoundError(f'{run}: expected one config dump, found '
                                f'{dumps}')
    return dumps[0]


def eval_config(run: str, world: str) -> str:
    """The dump with CLIPScore beside the caption metric."""
    clip = osp.join(world, 'clip')
    path = osp.join(run, 'rerank_eval.py')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f"""_base_ = [{cell_config(run)!r}]
test_evaluator = [
    dict(type='COCOCaptionMetric',
         ann_file={osp.join(world, 'corpus/annotations/test_gt.json')!r},
         scorers=('bleu', 'rouge', 'cider')),
    dict(type='CLIPScoreMetric', clip_model='pcm-mini-clip',
         clip_checkpoint={osp.join(clip, 'pcm-mini-clip.pt')!r},
         model_config={osp.join(clip, 'pcm-mini-clip.json')!r}),
]
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--world', required=True)
    parser.add_argument('--runs', nargs='+', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    world = osp.abspath(args.world)
    done = set()
    if osp.isfile(args.out):
        with open(args.out, encoding='utf-8') as f:
            done = {(r['run'], r['arm']) for r in map(json.loads, f)}
    for run in map(osp.abspath, args.runs):
        name = osp.basename(run)
        variant, rate, seed = re.fullmatch(
            r'(\w+?)_synth_d(\d+)_s(\d+)', name).groups()
        checkpoint = osp.join(run, 'epoch_4.pth')
        if not osp.isfile(checkpoint):
            print(f'{name}: no epoch_4.pth yet, skipped', flush=True)
            continue
        choice_file = osp.join(run, 'rerank_choice.json')
        if not osp.isfile(choice_file):
            tool('tools/choose_rerank_weight.py', cell_config(run),
                 checkpoint, '--num-candidates', '5',
                 '--val-ann', osp.join(world, 'corpus/annotations/val.json'),
                 '--val-features', osp.join(world, 'features/val'),
                 '--val-gt', osp.join(world, 'corpus/annotations/val_gt.json'),
                 '--out', choice_file)
        with open(choice_file, encoding='utf-8') as f:
            choice = json.load(f)
        fused = re.compile(r'model\.reranker\.(weight|length_penalty)=')
        reranker = [o for o in choice['cfg_options'] if not fused.match(o)]
        options = dict(
            plain=[],
            rerank=choice['cfg_options'],
            length_only=reranker + ['model.reranker.weight=0',
                                    'model.reranker.length_penalty=1.0'])
        config = eval_config(run, world)
        for arm in ARMS:
            if (name, arm) in done:
                continue
            out = osp.join(run, f'rerank_{arm}.json')
            tool('tools/test.py', config, checkpoint, '--work-dir',
                 osp.join(run, f'rerank_{arm}'), '--out', out,
                 *(['--cfg-options', *options[arm]] if options[arm] else []))
            with open(out, encoding='utf-8') as f:
                metrics = json.load(f)
            row = dict(world=osp.basename(world), run=name, variant=variant,
                       rate=int(rate) / 100, seed=int(seed), arm=arm,
                       weight=choice['weight'] if arm == 'rerank' else
                       (0.0 if arm == 'length_only' else None),
                       length_penalty=choice['length_penalty']
                       if arm == 'rerank' else
                       (1.0 if arm == 'length_only' else None),
                       num_candidates=5 if arm != 'plain' else None,
                       val_CIDEr_chosen=choice['CIDEr'], **metrics)
            with open(args.out, 'a', encoding='utf-8') as f:
                f.write(json.dumps(row) + '\n')
            print(json.dumps(row), flush=True)


if __name__ == '__main__':
    main()
