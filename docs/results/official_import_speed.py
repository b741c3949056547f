"""Measure tools/data/import_official.py at the official ViT-B/32 sizes.

    .venv/bin/python docs/results/official_import_speed.py --records 20000 \\
        --work /tmp/official_bench \\
        --out docs/results/official_import_speed.json

Writes a synthetic release of ``--records`` captions in the official
layout (a train pickle over a 200-word vocabulary; one OpenAI-CLIP-Feature
``.npz`` per image, ``features`` 49 x 768 and ``g_feature`` 1 x 512 float32
holding fp16 values, in eight ``_sp<k>`` folders), then times the
annotation import and the feature import with one process and with two
(torchrun), each with its peak resident memory (``/usr/bin/time``), and
compares the store's bytes with the ``.npz`` folders'. The files are in the
page cache (just written), so the rates are decode + write rates.
"""
import argparse
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'data', 'import_official.py')
FULL_COCO = 542401
FOLDERS = 8


def write_release(work: str, n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    words = [f'w{i}' for i in range(200)]
    with open(osp.join(work, 'vocabulary.txt'), 'w') as f:
        f.write(''.join(w + '\n' for w in words))
    per_folder = -(-n // FOLDERS)
    feats = osp.join(work, 'mscoco_sd_feats')
    records = []
    for k in range(n):
        length = int(rng.integers(8, 14))
        ids = rng.integers(1, len(words) + 1, size=length)
        tokens = np.zeros((1, 21), np.int64)
        targets = np.full((1, 21), -1, np.int64)
        tokens[0, 1:length + 1], targets[0, :length] = ids, ids
        targets[0, length] = 0
        image_id, split = str(6000000 + k), k // per_folder
        records.append(dict(image_id=image_id, split_id=split,
                            tokens_ids=tokens, target_ids=targets,
                            clipscore=np.float32(rng.uniform(0.3, 0.9))))
        folder = f'{feats}_sp{split}'
        os.makedirs(folder, exist_ok=True)
        np.savez_compressed(
            osp.join(folder, f'{image_id}.npz'),
            features=rng.standard_normal((49, 768)).astype(np.float16)
            .astype(np.float32),
            g_feature=rng.standard_normal((1, 512)).astype(np.float16)
            .astype(np.float32))
    with open(osp.join(work, 'anno_train.pkl'), 'wb') as f:
        pickle.dump(records, f, protocol=4)
    return dict(vocabulary=osp.join(work, 'vocabulary.txt'), feats=feats,
                pickle=osp.join(work, 'anno_train.pkl'))


def timed(cmd) -> dict:
    """Run ``cmd`` under /usr/bin/time; seconds and peak RSS (MiB)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    start = time.time()
    proc = subprocess.run(['/usr/bin/time', '-f', 'maxrss_kb=%M'] + cmd,
                          env=env, capture_output=True, text=True)
    seconds = time.time() - start
    if proc.returncode:
        sys.exit(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
    kb = [int(x.split('=')[1]) for x in proc.stderr.splitlines()
          if x.startswith('maxrss_kb=')][-1]
    summary = [json.loads(x[len('summary: '):]) for x in
               proc.stdout.splitlines() if x.startswith('summary: ')][-1]
    return dict(seconds=round(seconds, 2), peak_rss_mib=round(kb / 1024, 1),
                summary=summary)


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def du(*paths) -> int:
    return sum(osp.getsize(osp.join(r, f)) for p in paths
               for r, _, fs in os.walk(p) for f in fs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--records', type=int, default=20000)
    parser.add_argument('--work', default='/tmp/official_bench')
    parser.add_argument('--out', required=True)
    parser.add_argument('--reuse', action='store_true',
                        help='keep the release a previous run wrote in '
                        '--work (outputs are rewritten)')
    args = parser.parse_args()
    start = time.time()
    if args.reuse and osp.isfile(osp.join(args.work, 'anno_train.pkl')):
        release = dict(vocabulary=osp.join(args.work, 'vocabulary.txt'),
                       feats=osp.join(args.work, 'mscoco_sd_feats'),
                       pickle=osp.join(args.work, 'anno_train.pkl'))
        for name in os.listdir(args.work):
            if name.startswith(('data', 'store_')):
                shutil.rmtree(osp.join(args.work, name))
    else:
        shutil.rmtree(args.work, ignore_errors=True)
        os.makedirs(args.work)
        release = write_release(args.work, args.records)
    made = time.time() - start
    py = sys.executable
    data = osp.join(args.work, 'data')
    ann = timed([py, TOOL, 'annotations', release['pickle'], '--vocabulary',
                 release['vocabulary'], '--split', 'train', '--out', data])
    # A twentieth of the records: the difference is the per-record cost
    # (time and memory) without the start-up and the imported libraries.
    with open(release['pickle'], 'rb') as f:
        part = pickle.load(f)[:args.records // 20]
    small = osp.join(args.work, 'anno_part.pkl')
    with open(small, 'wb') as f:
        pickle.dump(part, f, protocol=4)
    ann_small = timed([py, TOOL, 'annotations', small, '--vocabulary',
                       release['vocabulary'], '--split', 'train', '--out',
                       osp.join(args.work, 'data_part')])
    extra = args.records - len(part)
    per_record_s = (ann['seconds'] - ann_small['seconds']) / extra
    per_record_kib = (ann['peak_rss_mib'] - ann_small['peak_rss_mib']) \
        * 1024 / extra
    train = osp.join(data, 'annotations', 'train.json')
    runs = {}
    for name, launcher in (('one_process', [py]), ('two_processes', [
            py, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
            '--master_port', str(free_port())])):
        store = osp.join(args.work, f'store_{name}')
        runs[name] = timed(launcher + [TOOL, 'features', train,
                                       '--feats-folder', release['feats'],
                                       '--out-dir', store])
        run = runs[name]
        run['files_per_s_wall'] = round(args.records / run['seconds'], 1)
        # the tool's own loop, without the interpreter/torch start-up
        run['files_per_s'] = run['summary']['files_per_s']
        run['startup_s'] = round(run['seconds'] -
                                 run['summary']['seconds'], 1)
    official = du(*[f'{release["feats"]}_sp{k}' for k in range(FOLDERS)])
    store = du(osp.join(args.work, 'store_one_process'))
    scale = FULL_COCO / args.records
    best = max(r['files_per_s'] for r in runs.values())
    result = dict(
        command=' '.join(sys.argv), records=args.records,
        machine=dict(cpus=os.cpu_count(), load_average=os.getloadavg()),
        release_written_s=round(made, 1),
        annotations=dict(ann, records_per_s_wall=round(
            args.records / ann['seconds'], 1),
            records_per_s=round(1 / per_record_s, 1),
            kib_per_record=round(per_record_kib, 2),
            subset=dict(ann_small, records=len(part))),
        features=runs,
        bytes=dict(official_npz=official, store=store,
                   store_over_official=round(store / official, 3),
                   annotation_json=osp.getsize(train),
                   official_pickle=osp.getsize(release['pickle'])),
        per_10000_records=dict(
            annotations_s=round(per_record_s * 1e4, 1),
            features_s_one_process=round(
                runs['one_process']['summary']['seconds'] * 1e4
                / args.records, 1),
            features_s_two_processes=round(
                runs['two_processes']['summary']['seconds'] * 1e4
                / args.records, 1),
            store_gb=round(store * 1e4 / args.records / 1e9, 3),
            official_npz_gb=round(official * 1e4 / args.records / 1e9, 3)),
        projected_542401=dict(
            annotations_s=round(ann_small['seconds'] +
                                per_record_s * FULL_COCO),
            annotations_peak_rss_gib=round(
                (ann_small['peak_rss_mib'] * 1024 + per_record_kib *
                 FULL_COCO) / 2**20, 2),
            features_peak_rss_mib_per_process=max(
                r['peak_rss_mib'] for r in runs.values()),
            features_h_best=round(FULL_COCO / best / 3600, 2),
            store_gb=round(store * scale / 1e9, 1),
            official_npz_gb=round(official * scale / 1e9, 1),
            note='linear in records (the feature import streams shard by '
            'shard: its memory does not grow); the .npz files were in the '
            'page cache, and the 2 CPUs were shared with other jobs '
            '(load_average)'))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
