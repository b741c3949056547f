# Copyright (c) pcm_plugin authors. MIT licence.
"""Word-level caption tokenizer from the training captions.

Example::

    python tools/build_vocab.py data/coco/annotations/train.json \\
        --out data/coco/tokenizer.json --min-count 5 \\
        --coverage-ann data/coco/annotations/test.json

Writes a Hugging Face ``tokenizer.json`` (``[EOS]``=0 also used as BOS,
``[UNK]``=1, ``[PAD]``=2, words from 3 by decreasing frequency) that
``transformers.PreTrainedTokenizerFast`` loads offline, and prints the
vocabulary size and the token coverage (fraction of words that are not
``[UNK]``) on the training captions and on held-out annotation files.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import tools._cli  # noqa: E402,F401  the tools' start-up

# pcm_plugin is imported after parse_args: --help and argument errors
# answer at once (tools/_cli.py says why).


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Build the word-level caption tokenizer (tokenizer.json)'
        ' from the captions of a training annotation file.')
    parser.add_argument('ann_file', help='training annotation JSON '
                        '(tools/data/convert_*.py output)')
    parser.add_argument('--out', default=None,
                        help='tokenizer.json path (default: next to the '
                        'annotations folder, DATASET/tokenizer.json)')
    parser.add_argument('--min-count', type=int, default=5,
                        help='keep words seen at least this often in the '
                        'training captions (default 5)')
    parser.add_argument('--max-words', type=int, default=0,
                        help='keep at most this many words (0 = no cap)')
    parser.add_argument('--coverage-ann', action='append', default=[],
                        metavar='FILE', help='held-out annotation file to '
                        'report token coverage on (repeatable)')
    parser.add_argument('--stats-out', default=None,
                        help='also write the numbers as JSON here')
    return parser.parse_args(argv)


def default_out(ann_file: str) -> str:
    folder = osp.dirname(osp.abspath(ann_file))
    if osp.basename(folder) == 'annotations':
        folder = osp.dirname(folder)
    return osp.join(folder, 'tokenizer.json')


def main(argv=None) -> int:
    args = parse_args(argv)
    from pcm_plugin.data_prep.bad_input import BadInputError
    from pcm_plugin.data_prep.vocab import build_tokenizer_file
    out = args.out or default_out(args.ann_file)
    try:
        stats = build_tokenizer_file(
            args.ann_file, out, min_count=args.min_count,
            max_words=args.max_words, coverage_anns=args.coverage_ann)
    except (BadInputError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    num_special = stats['vocab_size'] - stats['vocab_words']
    print(f'{stats["num_captions"]} captions, {stats["distinct_words"]} '
          'distinct words')
    print(f'vocabulary: {stats["vocab_words"]} words seen >= '
          f'{args.min_count} times (+{num_special} special tokens = '
          f'{stats["vocab_size"]} ids)')
    print('token coverage, training captions: '
          f'{stats["train_token_coverage"]:.4%}')
    for f, c in stats['held_out'].items():
        print(f'token coverage, {f}: {c["token_coverage"]:.4%} '
              f'({c["num_unk"]} of {c["num_tokens"]} tokens are [UNK]; '
              f'{c["num_unk_types"]} of {c["num_types"]} distinct words '
              'unknown)')
    if args.stats_out:
        from pcm_plugin.utils.fileio import atomic_write_json
        atomic_write_json(args.stats_out, stats)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
