"""Tests for pcm_plugin.testing.tiny_diffusion (offline tiny SD pipeline)."""
import json
import os.path as osp

import pytest

TEXTS = ['a man riding a horse', 'Un café à Paris, 東京 🚲!',
         ' '.join(['word'] * 100)]


def test_bpe_files_give_open_clip_token_ids(tmp_path):
    import open_clip
    from transformers import CLIPTokenizer

    from pcm_plugin.testing import build_clip_tokenizer_files
    folder = build_clip_tokenizer_files(str(tmp_path))
    vocab = json.load(open(osp.join(folder, 'vocab.json'), encoding='utf-8'))
    assert len(vocab) == 49408
    assert vocab['<|startoftext|>'] == 49406
    assert vocab['<|endoftext|>'] == 49407
    tokenizer = CLIPTokenizer(osp.join(folder, 'vocab.json'),
                              osp.join(folder, 'merges.txt'),
                              model_max_length=77,
                              pad_token='<|endoftext|>')
    ours = tokenizer(TEXTS, padding='max_length', truncation=True,
                     max_length=77).input_ids
    reference = open_clip.get_tokenizer('ViT-B-32')(TEXTS)  # (3, 77)
    for row, ids in zip(reference.tolist(), ours):
        length = row.index(49407) + 1  # open_clip pads with 0, not EOT
        assert ids[:length] == row[:length]


@pytest.fixture(scope='module')
def pipe_dir(tmp_path_factory):
    from pcm_plugin.testing import build_tiny_sd_pipeline
    return build_tiny_sd_pipeline(str(tmp_path_factory.mktemp('sd')))


def test_pipeline_reloads_offline_and_generates(pipe_dir):
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    index = json.load(open(osp.join(pipe_dir, 'model_index.json')))
    assert {'scheduler', 'text_encoder', 'tokenizer', 'unet',
            'vae'} <= set(index)
    assert not osp.exists(osp.join(pipe_dir, '_bpe'))
    pipe = DiffusionPipeline.from_pretrained(pipe_dir, local_files_only=True)
    assert type(pipe).__name__ == 'StableDiffusionPipeline'
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.scheduler.config.steps_offset == 1
    pipe.set_progress_bar_config(disable=True)

    def generate(seed):
        out = pipe('a red car', num_inference_steps=2, height=64, width=64,
                   generator=torch.Generator().manual_seed(seed))
        return np.asarray(out.images[0])

    first = generate(0)
    assert first.shape == (64, 64, 3)
    np.testing.assert_array_equal(first, generate(0))
    assert (first != generate(1)).any()
