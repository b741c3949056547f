"""Side-by-side performance measurements at the PCM-Net COCO size.

Every comparison times its candidates *interleaved* (A, B, A, B, ...)
after warm-up, so that load from other work on the machine hits both
alike, and reports median and interquartile range. FLOPs are counted from
the executed ops (``torch.utils.flop_counter``: every matmul/addmm/bmm of
forward and backward), not estimated.

Sizes (PCM-Net COCO ViT-B/32, docs/method.md §3 and §6): d=512, 3+3 layers,
8 heads, FFN 2048, vocabulary 10,200, 49x768 patches + a 512-d global
feature, 20 words, batch 32.
"""
import itertools
import os.path as osp
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

COCO = dict(d=512, layers=3, heads=8, ffn=2048, vocab=10200, patches=49,
            patch_dim=768, global_dim=512, words=20, batch=32, concepts=446)
# Tiny sizes of the tools' --smoke runs: every part runs, nothing is timed.
SMOKE = dict(d=32, layers=1, heads=2, ffn=64, vocab=64, patches=4,
             patch_dim=24, global_dim=16, words=5, batch=4, concepts=8)


def timed_interleaved(candidates: Dict[str, Callable[[], object]], *,
                      warmup: int = 2, reps: int = 7, cpu: bool = False,
                      cpu_clocks: Optional[Dict[str, Callable[[], float]]]
                      = None) -> Dict[str, Dict]:
    """Median/IQR seconds of each callable, run in alternation.

    With ``cpu``, also the median CPU seconds of this process
    (``cpu_median_s``): for single-threaded work on shared cores, the time
    the work itself took, without the waits for the other processes.
    ``cpu_clocks`` gives a candidate another CPU clock than
    ``time.process_time`` (e.g. one adding a DataLoader's workers).
    """
    clocks = {name: (cpu_clocks or {}).get(name, time.process_time)
              for name in candidates}
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    runs: Dict[str, List[float]] = {name: [] for name in candidates}
    cpu_runs: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            start, cpu_start = time.perf_counter(), clocks[name]()
            fn()
            runs[name].append(time.perf_counter() - start)
            cpu_runs[name].append(clocks[name]() - cpu_start)
    out = {}
    for name, values in runs.items():
        q = np.percentile(values, [25, 50, 75])
        out[name] = dict(median_s=float(q[1]), iqr_s=float(q[2] - q[0]),
                         runs=len(values))
        if cpu:
            out[name]['cpu_median_s'] = float(np.median(cpu_runs[name]))
    return out


def build_coco_size(folder: str, *, mixup: bool, size: Dict = COCO,
                    attn_impl: str = 'eager',
                    compile_layers: object = False):
    """A random PCM-Net (full, or Base with ``mixup=False``) at COCO size:
    tokenizer, concept bank and CLIP head files written to ``folder``.
    ``attn_impl`` and ``compile_layers`` as the model configs take them."""
    from safetensors.torch import save_file

    import pcm_plugin  # noqa: F401
    from pcm_plugin.models.concept_bank import save_concept_bank
    from pcm_plugin.models.tokenizer import (
        save_tokenizer,
        tokenizer_from_words,
    )
    from pcm_plugin.registry import MODELS
    tok = osp.join(folder, 'tokenizer.json')
    if not osp.isfile(tok):
        save_tokenizer(tokenizer_from_words(
            [f'w{i}' for i in range(size['vocab'] - 3)]), tok)
        rows = np.random.default_rng(0).standard_normal(
            (size['concepts'], size['global_dim'])).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        save_concept_bank(osp.join(folder, 'bank.npz'),
                          [f'c{i}' for i in range(len(rows))], rows)
        save_file({'visual.ln_post.weight': torch.ones(size['patch_dim']),
                   'visual.ln_post.bias': torch.zeros(size['patch_dim']),
                   'visual.proj': torch.randn(size['patch_dim'],
                                              size['global_dim']) * 0.03},
                  osp.join(folder, 'head.safetensors'))
    layer = dict(embed_dim=size['d'], num_layers=size['layers'],
                 num_heads=size['heads'], ffn_dim=size['ffn'])
    return MODELS.build(dict(
        type='PCMCaptioner', tokenizer=tok, max_len=size['words'],
        clip_weighted=mixup,
        mixup=dict(type='PCMMixup', patch_dim=size['patch_dim'],
                   global_dim=size['global_dim'],
                   num_patches=size['patches'], embed_dim=size['d'],
                   concept_bank=osp.join(folder, 'bank.npz'),
                   clip_head=osp.join(folder, 'head.safetensors'),
                   mode='top' if mixup else 'none'),
        encoder=dict(type='VisualSemanticEncoder', attn_impl=attn_impl,
                     **layer),
        decoder=dict(type='CaptionTransformerDecoder', beam_size=3,
                     attn_impl=attn_impl, **layer),
        loss=dict(type='CLIPWeightedCELoss', alpha=2.5,
                  focal='batch' if mixup else 'none'),
        compile_layers=compile_layers))


def random_batch(size: Dict = COCO, seed: int = 0):
    """Features and ``size['words']``-word captions of one batch."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    inputs = dict(
        patch_feats=torch.randn(size['batch'], size['patches'],
                                size['patch_dim'], generator=g),
        global_feat=torch.randn(size['batch'], size['global_dim'],
                                generator=g))
    samples = []
    for i in range(size['batch']):
        sample = DataSample(metainfo=dict(image_id=str(i), clip_cos=0.3))
        sample.gt_caption = ' '.join(
            f'w{(i * 7 + j) % 1000}' for j in range(size['words']))
        samples.append(sample)
    return inputs, samples


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA runs asynchronously)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def train_step_fn(model, batch, *, amp: bool = False,
                  fused_adam: bool = True) -> Callable[[], None]:
    """One forward + backward + Adam step (dropout on: training mode).

    ``amp``: forward and loss under bfloat16 autocast, as
    ``BF16OptimWrapper`` (``--amp``) runs them. ``fused_adam``: the fused
    Adam kernel, as the COCO schedule config
    (``configs/_base_/schedules/pcm_noam_12e.py``); False for PyTorch's
    default for-loop Adam.
    """
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4,
        fused=fused_adam)
    inputs, samples = batch
    device = next(model.parameters()).device
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(inputs, samples, mode='loss')['loss_ce']
        loss.backward()
        optimizer.step()
        synchronize(device)
    return step


def count_flops(fn: Callable[[], None]) -> int:
    """FLOPs of one call of ``fn`` (matmul-like ops, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def beam_fn(decoder, memory: torch.Tensor, mask: torch.Tensor, *,
            words: int, amp: bool = False) -> Callable[[], None]:
    """One beam-3 search of ``words`` steps, under bfloat16 autocast with
    ``amp`` (as ``tools/test.py --amp``)."""

    @torch.no_grad()
    def search():
        with torch.autocast(memory.device.type, dtype=torch.bfloat16,
                            enabled=amp):
            decoder.generate(memory, mask, beam_size=3, max_len=words)
        synchronize(memory.device)
    return search


def variant_name(attn_impl: str, amp: bool, compiled: bool) -> str:
    """e.g. ``'sdpa-bf16-compiled'``."""
    return (f"{attn_impl}-{'bf16' if amp else 'fp32'}"
            + ('-compiled' if compiled else ''))


def attention_precision_compile(folder: str, *, size: Dict = COCO,
                                device: str = 'cpu', reps: int = 7,
                                compile_backend: Optional[str] = 'inductor'
                                ) -> Dict:
    """Training step and beam-3 search of the full model: eager vs SDPA
    attention x float32 vs bfloat16 autocast x compiled layers or not.

    Every variant starts from the same weights; each comparison runs its
    variants interleaved. The first call of a compiled variant (the
    compilation) is timed apart, as ``first_call_s``.

    Args:
        folder (str): Workspace for the model's files.
        size (dict): Model and batch sizes. Defaults to :data:`COCO`.
        device (str): ``'cpu'`` or ``'cuda'``.
        reps (int): Timed repetitions per variant.
        compile_backend (str, optional): ``torch.compile`` backend of the
            compiled variants; None leaves them out.

    Returns:
        dict: ``train_step`` and ``beam3``, each variant's median/IQR and
        its time relative to ``eager-fp32``; ``compile_error`` if
        compiling failed on this device (the compiled rows then missing).
    """
    from pcm_plugin.models.layers import ATTN_IMPLS
    device = torch.device(device)
    torch.manual_seed(0)
    base = build_coco_size(folder, mixup=True, size=size).to(device).eval()
    inputs, samples = random_batch(size)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.no_grad():
        memory, mask = base.encode(inputs)
    out = dict(device=str(device), compile_backend=compile_backend)
    models = {}
    for comp, impl, amp in itertools.product(
            (False, True) if compile_backend else (False, ), ATTN_IMPLS,
            (False, True)):
        model = build_coco_size(
            folder, mixup=True, size=size, attn_impl=impl,
            compile_layers=comp and dict(backend=compile_backend))
        model.load_state_dict(base.state_dict())
        models[variant_name(impl, amp, comp)] = (model.to(device), amp)

    def timed(part: str, fns: Dict[str, Callable[[], None]]) -> Dict:
        first = {}
        for name in [n for n in fns if n.endswith('-compiled')]:
            start = time.perf_counter()
            try:
                fns[name]()
            except Exception as err:  # a backend this device lacks
                out['compile_error'] = f'{part}: {type(err).__name__}: {err}'
                for key in list(models):
                    if key.endswith('-compiled'):
                        del models[key]
                        fns.pop(key, None)
                break
            first[name] = time.perf_counter() - start
        times = timed_interleaved(fns, reps=reps)
        for name, t in times.items():
            t['over_eager_fp32'] = (t['median_s']
                                    / times['eager-fp32']['median_s'])
            if name in first:
                t['first_call_s'] = first[name]
        return times

    # The compiled variants share the layers' code in this one process,
    # each with its own graphs (training and eval, dtype, kernel, cache
    # lengths 0, 1 and dynamic): more than dynamo's 8 per function, past
    # which it runs the function eagerly (a first run here did).
    from torch._dynamo import config as dynamo_config
    with dynamo_config.patch(recompile_limit=64):
        out['train_step'] = timed('train_step', {
            name: train_step_fn(model, (inputs, samples), amp=amp)
            for name, (model, amp) in models.items()})
        searches = {}
        for name, (model, amp) in models.items():
            never_end(model.eval().decoder)  # random weights: all 20 steps
            searches[name] = beam_fn(model.decoder, memory, mask,
                                     words=size['words'], amp=amp)
        out['beam3'] = timed('beam3', searches)
    return out


def never_end(decoder) -> None:
    """Make [EOS] impossible for a random-weight decoder, so that every
    search runs all its steps (HF is held to ``min_new_tokens`` alike)."""
    with torch.no_grad():
        decoder.predictor[-1].bias[0] = -1e4


def new_workspace() -> str:
    return tempfile.mkdtemp(prefix='pcm_bench_')
