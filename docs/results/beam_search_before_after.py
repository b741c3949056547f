"""Beam search before / after the speed-up of issue 11 target 2
(docs/benchmarks/speed.md): same captions, and the time of each.

The previous decoder is read from git (``--before``, default 689dd3c) and
given the new one's weights. Checked: the ids of beam 3 and greedy search
on every test image of trained mini-world runs, and the captions of
``PCMCaptioner.generate`` end to end (the new one drops the masked tokens
before the encoder) against the previous path (all tokens encoded, the
previous search). Timed, interleaved with HF BART: beam 3 and greedy at
the COCO size (random weights, [EOS] impossible) and on a trained run.

    OMP_NUM_THREADS=1 python docs/results/beam_search_before_after.py \\
        --out docs/results/beam_search_before_after.json
"""
import argparse
import copy
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import types

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault('HF_HUB_OFFLINE', '1')
ABLATION = 'work_dirs/ablation/localized-seed0'
CELLS = ('full_synth_d030_s0', 'pcm_synth_d060_s1', 'base_synth_d000_s2',
         'cxe_synth_d030_s3', 'real_real_train_s0',
         'full_nofocal_synth_d030_s4', 'full_synth_d060_sync_s0')


def previous_decoder(decoder, commit: str):
    """The decoder of ``commit`` with ``decoder``'s weights (eval mode)."""
    src = subprocess.check_output(
        ['git', 'show', f'{commit}:pcm_plugin/models/caption_decoder.py'],
        cwd=REPO, text=True)
    src = src.replace('from .layers import',
                      'from pcm_plugin.models.layers import')
    src = src.replace('@MODELS.register_module()\n', '')  # one per name
    module = types.ModuleType('previous_caption_decoder')
    exec(compile(src, 'previous_caption_decoder.py', 'exec'),
         module.__dict__)
    layer = decoder.layers[0]
    old = module.CaptionTransformerDecoder(
        vocab_size=decoder.vocab_size, embed_dim=decoder.embed_dim,
        num_layers=len(decoder.layers), num_heads=layer.self_attn.num_heads,
        ffn_dim=layer.ffn.net[0].out_features, max_len=decoder.max_len,
        beam_size=decoder.beam_size, bos_id=decoder.bos_id,
        eos_id=decoder.eos_id, layer_norm_eps=layer.norm_self.eps,
        embed_norm_eps=decoder.embed_norm.eps,
        attn_impl=layer.self_attn.attn_impl)
    old.load_state_dict(decoder.state_dict())
    return old.eval()


def test_batches(run_dir: str, batch: int):
    """A trained run's model and its whole test set, in batches."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint

    from pcm_plugin.registry import MODELS
    cfg = Config.fromfile(sorted(glob.glob(osp.join(run_dir, '*.py')))[0])
    model = MODELS.build(copy.deepcopy(cfg.model))
    load_checkpoint(model, osp.join(run_dir, 'epoch_6.pth'),
                    map_location='cpu', logger='silent')
    init_default_scope('mmpretrain')
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.update(batch_size=batch, num_workers=0)
    return model.eval(), Runner.build_dataloader(loader)


@torch.no_grad()
def same_captions(cell: str, commit: str) -> dict:
    """Ids (beam 3, greedy) and end-to-end captions, previous vs now."""
    from pcm_plugin.models.tokenizer import decode_ids
    model, loader = test_batches(osp.join(REPO, ABLATION, cell), 32)
    old = previous_decoder(model.decoder, commit)
    out = dict(images=0, different_beam3=0, different_greedy=0,
               different_captions=0)
    for batch in loader:
        inputs = model.data_preprocessor(batch, False)['inputs']
        memory, mask = model.encode(inputs)
        for beam in (3, 1):
            new_ids = model.decoder.generate(memory, mask, beam_size=beam)[0]
            old_ids = old.generate(memory, mask, beam_size=beam)[0]
            key = 'different_beam3' if beam == 3 else 'different_greedy'
            out[key] += int((new_ids != old_ids).any(1).sum())
        before = decode_ids(model.tokenizer, old.generate(memory, mask)[0])
        now = model.generate(inputs)
        out['different_captions'] += sum(a != b for a, b in zip(now, before))
        out['images'] += len(now)
    out['memory_positions'] = memory.shape[1]
    return out


def timings(decoder, memory, mask, *, words: int, bart_steps: int,
            commit: str, reps: int) -> dict:
    """Beam 3 and greedy, previous vs now, and HF BART, interleaved."""
    from transformers.modeling_outputs import BaseModelOutput

    from projects.benchmarks.pcm_benchmarks import decoding_bench, perf
    old = previous_decoder(decoder, commit)
    bart = decoding_bench.hf_bart(decoding_bench.decoder_size(decoder))

    def search(dec, beam):
        return lambda: dec.generate(memory, mask, beam_size=beam,
                                    max_len=words)

    def bart_beam():
        bart.generate(encoder_outputs=BaseModelOutput(
            last_hidden_state=memory), num_beams=3,
            max_new_tokens=bart_steps, min_new_tokens=bart_steps,
            do_sample=False, early_stopping=False)

    with torch.no_grad():
        times = perf.timed_interleaved(dict(
            beam3_now=search(decoder, 3), beam3_before=search(old, 3),
            hf_bart_beam3=bart_beam, greedy_now=search(decoder, 1),
            greedy_before=search(old, 1)), reps=reps, cpu=True)
    for row in times.values():
        row['captions_per_s'] = memory.size(0) / row['median_s']
    times['bart_steps'] = bart_steps
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--before', default='689dd3c')
    parser.add_argument('--cells', nargs='*', default=list(CELLS))
    parser.add_argument('--reps', type=int, default=7)
    parser.add_argument('--out')
    args = parser.parse_args()
    torch.set_num_threads(1)
    from projects.benchmarks.pcm_benchmarks import decoding_bench, perf
    report = dict(before=args.before, load_before=os.getloadavg()[0])
    report['same'] = {cell: same_captions(cell, args.before)
                      for cell in args.cells}
    print(json.dumps(report['same'], indent=1), flush=True)
    torch.manual_seed(0)
    model = perf.build_coco_size(perf.new_workspace(), mixup=True).eval()
    perf.never_end(model.decoder)  # random weights: all 20 steps
    with torch.no_grad():
        memory, mask = model.encode(perf.random_batch()[0])
    words = perf.COCO['words']
    report['coco_random'] = timings(model.decoder, memory, mask,
                                    words=words, bart_steps=words,
                                    commit=args.before, reps=args.reps)
    model, memory, mask = decoding_bench.trained_run_batch(
        osp.join(REPO, ABLATION, args.cells[0]))
    steps = decoding_bench.search_steps(model.decoder, memory, mask,
                                        beam_size=3, max_len=model.max_len)
    report['trained'] = timings(model.decoder, memory, mask,
                                words=model.max_len, bart_steps=steps,
                                commit=args.before, reps=args.reps)
    report['load_after'] = os.getloadavg()[0]
    for part in ('coco_random', 'trained'):
        for name, row in report[part].items():
            if isinstance(row, dict):
                print(f"{part} {name}: {row['median_s'] * 1e3:.0f} ms "
                      f"(IQR {row['iqr_s'] * 1e3:.0f}), CPU "
                      f"{row['cpu_median_s'] * 1e3:.0f} ms")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
