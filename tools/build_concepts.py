# Copyright (c) pcm_plugin authors. MIT licence.
"""Concept banks: encode words with CLIP, derive nouns, import official.

Examples::

    # the shipped 446 words, 7-template prompt ensemble (docs/method.md 2.5)
    python tools/build_concepts.py encode --clip-model ViT-B-32 \\
        --clip-checkpoint data/clip/ViT-B-32.pt --out data/concepts_b32.npz
    # frequent nouns of a caption corpus (heuristic, no tagger offline)
    python tools/build_concepts.py nouns data/coco/annotations/train.json \\
        --out data/coco_nouns.txt
    # the official pickled banks, without executing pickled code
    python tools/build_concepts.py import-official \\
        coco400_embeddings_ViT-B32_with_ensemble.pickle \\
        --out data/concepts_official_b32.npz

Banks are ``.npz`` files (``words``, ``embeddings``, ``meta``) read by
``pcm_plugin.models.concept_bank.load_concept_bank`` without pickle.
"""
import argparse
import os
import os.path as osp
import pickle
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools._cli import positive_int  # noqa: E402

# pcm_plugin is imported after parse_args: --help and argument errors
# answer at once (tools/_cli.py says why).


def add_encode_args(sub) -> None:
    parser = sub.add_parser(
        'encode', help='encode concept words with an open_clip text encoder',
        description='Encode concept words by prompt ensemble: each '
        'template embedding is L2-normalised, the mean over templates is '
        're-normalised.')
    parser.add_argument('--out', required=True, help='output bank .npz')
    parser.add_argument('--words', default=None,
                        help='word list, one per line (default: the 446 '
                        'official words shipped in the package)')
    parser.add_argument('--clip-model', required=True,
                        help='open_clip model name, e.g. ViT-B-32')
    parser.add_argument('--clip-checkpoint', default=None,
                        help='local open_clip weights file')
    parser.add_argument('--pretrained', default=None,
                        help='instead of --clip-checkpoint: an open_clip '
                        'tag (e.g. openai) whose weights are in the cache')
    parser.add_argument('--cache-dir', default=None,
                        help='open_clip/HF cache holding --pretrained')
    parser.add_argument('--model-config', default=None,
                        help='JSON model config for a custom architecture '
                        '(file stem = --clip-model)')
    parser.add_argument('--templates', default='ensemble',
                        help='`ensemble` (7 ViECap templates, default), '
                        '`single` ("a photo of {}.") or a file with one '
                        'template per line holding {}')
    parser.add_argument('--batch-size', type=positive_int, default=256)
    parser.add_argument('--dtype', default='float32',
                        choices=['float32', 'float16'],
                        help='stored dtype (the official banks are fp16)')


def add_nouns_args(sub) -> None:
    parser = sub.add_parser(
        'nouns', help='frequent nouns of a caption corpus (heuristic)',
        description='Rank the nouns of caption corpora by frequency with a '
        'tagger-free HEURISTIC (noun-phrase heads after determiners and '
        'prepositions, plural folding); see pcm_plugin/data_prep/'
        'nouns.py. Prints the overlap with the official 446 words.')
    parser.add_argument('corpus', nargs='+',
                        help='annotation JSON, COCO caption JSON, Karpathy '
                        'JSON (train+restval) or image,caption CSV')
    parser.add_argument('--out', required=True,
                        help='word list to write (alphabetical, one per '
                        'line, like the shipped list)')
    parser.add_argument('--top-k', type=int, default=446,
                        help='number of nouns to keep (default 446)')
    parser.add_argument('--min-count', type=int, default=1,
                        help='drop nouns seen fewer times (default 1)')
    parser.add_argument('--counts-out', default=None,
                        help='also write `noun<TAB>count` by frequency')


def add_import_args(sub) -> None:
    parser = sub.add_parser(
        'import-official', help='import an official PCM-Net pickle safely',
        description='Convert coco400_embeddings_ViT-{B32,L14}_with_ensemble'
        '.pickle into a bank .npz with a restricted unpickler: only the '
        'globals such files need are admitted, nothing else is executed.')
    parser.add_argument('pickle', help='the official .pickle file')
    parser.add_argument('--out', required=True, help='output bank .npz')
    parser.add_argument('--dtype', default='float16',
                        choices=['float16', 'float32'],
                        help='stored dtype; both keep the fp16 values '
                        'exactly (default float16, as in the file)')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Build, derive or import concept banks.')
    sub = parser.add_subparsers(dest='command', required=True)
    add_encode_args(sub)
    add_nouns_args(sub)
    add_import_args(sub)
    return parser.parse_args(argv)


def run_encode(args: argparse.Namespace) -> None:
    from pcm_plugin.data_prep.concepts import build_concept_bank
    info = build_concept_bank(
        args.out, clip_model=args.clip_model, words_file=args.words,
        templates=args.templates, clip_checkpoint=args.clip_checkpoint,
        model_config=args.model_config, pretrained=args.pretrained,
        cache_dir=args.cache_dir, batch_size=args.batch_size,
        dtype=args.dtype)
    print(f'encoded {info["num_words"]} words x {info["num_templates"]} '
          f'templates with {args.clip_model}: embeddings '
          f'{tuple(info["shape"])} {args.dtype}')
    print(f'wrote {args.out}')


def run_nouns(args: argparse.Namespace) -> None:
    from pcm_plugin.data_prep.caption_readers import read_caption_corpus
    from pcm_plugin.data_prep.nouns import frequent_nouns
    from pcm_plugin.models.concept_bank import default_concept_words
    captions = []
    for path in args.corpus:
        captions.extend(read_caption_corpus(path))
    ranked = frequent_nouns(captions, top_k=args.top_k,
                            min_count=args.min_count, progress=True)
    words = sorted(w for w, _ in ranked)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        f.write(''.join(f'{w}\n' for w in words))
    if args.counts_out:
        with open(args.counts_out, 'w', encoding='utf-8') as f:
            f.write(''.join(f'{w}\t{c}\n' for w, c in ranked))
    official = set(default_concept_words())
    shared = official.intersection(words)
    print(f'{len(captions)} captions -> {len(words)} nouns (heuristic; '
          'no POS tagger offline)')
    print(f'overlap with the official {len(official)} concept words: '
          f'{len(shared)} ({len(shared) / len(official):.1%} of official, '
          f'{len(shared) / max(1, len(words)):.1%} of ours)')
    print('most frequent: ' + ', '.join(w for w, _ in ranked[:15]))
    print('official, not found: ' + ', '.join(sorted(official - shared)[:25])
          + (' ...' if len(official - shared) > 25 else ''))
    print(f'wrote {args.out}')


def run_import(args: argparse.Namespace) -> None:
    import numpy as np

    from pcm_plugin.data_prep.official_bank import (
        official_bank_meta,
        read_official_bank,
    )
    from pcm_plugin.models.concept_bank import (
        default_concept_words,
        save_concept_bank,
    )
    words, embeddings = read_official_bank(args.pickle)
    meta = official_bank_meta(args.pickle, embeddings)
    save_concept_bank(args.out, words, embeddings.astype(args.dtype), meta)
    norms = np.linalg.norm(embeddings.astype(np.float32), axis=1)
    same = words == default_concept_words()
    print(f'{len(words)} words, embeddings {embeddings.shape} '
          f'{embeddings.dtype} -> stored as {args.dtype}; row norms '
          f'{norms.min():.4f}..{norms.max():.4f}')
    print('words identical to the shipped 446-word list: '
          f'{"yes" if same else "NO"}')
    print(f'wrote {args.out}')


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.data_prep.bad_input import BadInputError
    run = {'encode': run_encode, 'nouns': run_nouns,
           'import-official': run_import}[args.command]
    try:
        run(args)
    except (BadInputError, FileNotFoundError, ValueError, RuntimeError,
            pickle.UnpicklingError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
