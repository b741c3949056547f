"""Decoding speed, side by side with HF BART ``generate(num_beams=3)`` of
the same dimensions: our beam search, greedy search with and without the
key/value cache, on a random-weight decoder or a trained run's.

Timing as in :mod:`.perf` (interleaved candidates, median and IQR).
"""
import os.path as osp
from typing import Dict, Optional

import torch

from pcm_plugin.testing.decoding import search_steps

from .perf import COCO, timed_interleaved


def greedy_without_cache(decoder, memory, memory_mask, steps: int):
    """Reference greedy search that re-runs the decoder on the whole prefix
    each step (what the cache saves); same ids as ``generate(beam 1)``."""
    B = memory.shape[0]
    ids = torch.zeros(B, 1, dtype=torch.long)  # [EOS] starts every caption
    finished = torch.zeros(B, dtype=torch.bool)
    for _ in range(steps):
        logits = decoder(ids, memory, memory_mask)[:, -1]  # (B, V)
        word = logits.argmax(-1).masked_fill(finished, 0)
        ids = torch.cat([ids, word[:, None]], 1)
        finished |= word == 0
        if finished.all():
            break
    return ids[:, 1:]


def decoding(decoder, memory: torch.Tensor, mask: torch.Tensor, bart, *,
             words: int, reps: int, bart_steps: Optional[int] = None,
             visible_memory: bool = False) -> Dict:
    """Beam 3, ours against HF BART ``generate(num_beams=3)``, and greedy
    with and without the key/value cache, timed interleaved.

    BART gets the same memory, all of it visible (a user's BART would run
    over every position, masked or not) and decodes ``bart_steps`` for
    every sample (``min_new_tokens`` = ``max_new_tokens``): with random
    weights its [EOS] means nothing, so it is held to the steps our search
    needs.

    Args:
        decoder (CaptionTransformerDecoder): Ours, eval mode.
        memory (Tensor): ``(B, L, d)`` encoder output.
        mask (Tensor): ``(B, L)`` bool, True = visible.
        bart (BartForConditionalGeneration): Same dimensions.
        words (int): Our searches' ``max_len``.
        reps (int): Timed repetitions.
        bart_steps (int, optional): BART's steps. Defaults to ``words``.
        visible_memory (bool): Also time BART over the visible positions
            only (``hf_bart_beam3_visible``: what our search attends to,
            masked positions dropped, with an attention mask for the
            padding).

    Returns:
        dict: Per candidate median/IQR/CPU seconds and ``captions_per_s``;
        ``steps`` (our beam-3 steps), ``bart_steps``,
        ``beam_speedup_over_hf_bart`` and ``cache_speedup`` (greedy), each
        also on CPU time (``*_cpu``).
    """
    from transformers.modeling_outputs import BaseModelOutput

    from pcm_plugin.models.decoder_cache import drop_masked_positions
    bart_steps = bart_steps or words

    def bart_fn(hidden, attention_mask=None):
        @torch.no_grad()
        def search():
            # A new wrapper each call: generate() expands it for the beams
            # in place, which would triple the batch at every repetition.
            bart.generate(encoder_outputs=BaseModelOutput(
                last_hidden_state=hidden), attention_mask=attention_mask,
                num_beams=3, max_new_tokens=bart_steps,
                min_new_tokens=bart_steps, do_sample=False,
                early_stopping=False)
        return search

    def ours(beam_size):
        @torch.no_grad()
        def search():
            decoder.generate(memory, mask, beam_size=beam_size,
                             max_len=words)
        return search

    @torch.no_grad()
    def greedy_no_cache():
        greedy_without_cache(decoder, memory, mask, words)

    candidates = dict(ours_beam3=ours(3), hf_bart_beam3=bart_fn(memory),
                      greedy_cache=ours(1), greedy_no_cache=greedy_no_cache)
    if visible_memory:
        kept, kept_mask = drop_masked_positions(memory, mask)
        candidates['hf_bart_beam3_visible'] = bart_fn(kept,
                                                      kept_mask.long())
    out = timed_interleaved(candidates, reps=reps, cpu=True)
    for row in out.values():
        row['captions_per_s'] = memory.size(0) / row['median_s']
    out['steps'] = search_steps(decoder, memory, mask, beam_size=3,
                                max_len=words)
    out['bart_steps'] = bart_steps
    for ratio, (slow, fast) in dict(
            beam_speedup_over_hf_bart=('hf_bart_beam3', 'ours_beam3'),
            cache_speedup=('greedy_no_cache', 'greedy_cache')).items():
        out[ratio] = out[slow]['median_s'] / out[fast]['median_s']
        out[ratio + '_cpu'] = (out[slow]['cpu_median_s']
                               / out[fast]['cpu_median_s'])
    return out


def trained_run_batch(run_dir: str, *, batch: int = 32):
    """A trained run's model and the memory of its first test images.

    Args:
        run_dir (str): Work directory with the run's config dump (``*.py``)
            and ``epoch_<n>.pth`` checkpoints; the latest is loaded.
        batch (int): Test images encoded.

    Returns:
        tuple: ``model`` (eval mode), ``memory`` (B, L, d), ``mask`` (B, L).
    """
    import copy
    import glob
    import re

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint

    import pcm_plugin  # noqa: F401
    from pcm_plugin.registry import MODELS
    configs = sorted(glob.glob(osp.join(run_dir, '*.py')))
    checkpoints = sorted(
        glob.glob(osp.join(run_dir, 'epoch_*.pth')),
        key=lambda p: int(re.findall(r'epoch_(\d+)', p)[-1]))
    if not configs or not checkpoints:
        raise FileNotFoundError(f'{run_dir}: no config dump (*.py) or no '
                                'epoch_*.pth checkpoint')
    cfg = Config.fromfile(configs[0])
    model = MODELS.build(copy.deepcopy(cfg.model))
    load_checkpoint(model, checkpoints[-1], map_location='cpu',
                    logger='silent')
    model.eval()
    init_default_scope('mmpretrain')  # where pcm_plugin registers
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.update(batch_size=batch, num_workers=0)
    data = model.data_preprocessor(
        next(iter(Runner.build_dataloader(loader))), False)
    with torch.no_grad():
        memory, mask = model.encode(data['inputs'])
    return model, memory, mask


def decoder_size(decoder) -> Dict:
    """:data:`COCO`-style sizes of a built decoder (for :func:`hf_bart`)."""
    layer = decoder.layers[0]
    return dict(d=decoder.embed_dim, layers=len(decoder.layers),
                heads=layer.self_attn.num_heads,
                ffn=layer.ffn.net[0].out_features, vocab=decoder.vocab_size)


def hf_bart(size: Dict = COCO):
    """A random HF BART with PCM-Net's decoder dimensions."""
    from transformers import BartConfig, BartForConditionalGeneration
    config = BartConfig(
        vocab_size=size['vocab'], d_model=size['d'],
        encoder_layers=size['layers'], decoder_layers=size['layers'],
        encoder_attention_heads=size['heads'],
        decoder_attention_heads=size['heads'],
        encoder_ffn_dim=size['ffn'], decoder_ffn_dim=size['ffn'],
        max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=0, forced_eos_token_id=None)
    return BartForConditionalGeneration(config).eval()
