"""A tiny random Stable-Diffusion-layout pipeline, saved like a real one.

No Stable Diffusion weights exist offline, so tests and the demo build a
randomly initialised ``StableDiffusionPipeline`` with toy widths and save it
with ``save_pretrained``: the synthesis tool then loads it exactly like a
downloaded SD 1.x snapshot (``DiffusionPipeline.from_pretrained(dir,
local_files_only=True)``). The CLIP tokenizer is rebuilt from the BPE
vocabulary that ships inside open_clip, so no hub download is needed; its ids
match open_clip's tokenizer.
"""
import gzip
import json
import os
import os.path as osp
from typing import List, Tuple

import torch

# 49152 - 256 - 2 + 1: the merge lines CLIP keeps (open_clip and transformers
# both slice the BPE file this way).
_NUM_MERGE_LINES = 49152 - 256 - 2 + 1


def _clip_bpe_vocab_and_merges() -> Tuple[List[str], List[str]]:
    """Vocabulary and merge lines of CLIP's BPE, from open_clip's file."""
    # deferred: open_clip loads only where a tiny pipeline is written
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    with gzip.open(default_bpe()) as f:
        lines = f.read().decode('utf-8').split('\n')
    merges = lines[1:_NUM_MERGE_LINES]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + '</w>' for t in byte_tokens]
    vocab += [''.join(m.split()) for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    return vocab, merges


def build_clip_tokenizer_files(out_dir: str) -> str:
    """Write ``vocab.json`` and ``merges.txt`` of CLIP's BPE into out_dir.

    Args:
        out_dir (str): Target directory (created if missing).

    Returns:
        str: ``out_dir``, loadable with ``CLIPTokenizer.from_pretrained``
        once a ``tokenizer_config.json`` is present (``save_pretrained``
        writes one).
    """
    os.makedirs(out_dir, exist_ok=True)
    vocab, merges = _clip_bpe_vocab_and_merges()
    with open(osp.join(out_dir, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f,
                  ensure_ascii=False)
    with open(osp.join(out_dir, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + '\n'.join(merges) + '\n')
    return out_dir


def build_tiny_sd_pipeline(out_dir: str, seed: int = 0) -> str:
    """Build and save a tiny random text-to-image pipeline (SD 1.x layout).

    About 3 M parameters, small enough to denoise on one CPU core within a
    test. Pixels are 2x the latent size (two VAE blocks), so 64x64 images
    use 32x32 latents.

    Args:
        out_dir (str): Directory to ``save_pretrained`` into.
        seed (int): Initialisation seed (same seed, same weights).

    Returns:
        str: ``out_dir``.
    """
    # deferred: diffusers and transformers' CLIP text model load only where
    # a tiny pipeline is written
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4,
        block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
        up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'),
        cross_attention_dim=32, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64),
        down_block_types=('DownEncoderBlock2D', 'DownEncoderBlock2D'),
        up_block_types=('UpDecoderBlock2D', 'UpDecoderBlock2D'),
        latent_channels=4, sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, vocab_size=49408, max_position_embeddings=77,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    tok_dir = build_clip_tokenizer_files(osp.join(out_dir, '_bpe'))
    # model_max_length=77: the pipeline pads to it (the default is "huge"
    # and padding='max_length' then overflows).
    tokenizer = CLIPTokenizer(
        osp.join(tok_dir, 'vocab.json'), osp.join(tok_dir, 'merges.txt'),
        model_max_length=77, pad_token='<|endoftext|>')
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(out_dir)
    # The tokenizer files now live in out_dir/tokenizer; drop the scratch.
    for name in ('vocab.json', 'merges.txt'):
        os.remove(osp.join(tok_dir, name))
    os.rmdir(tok_dir)
    return out_dir
