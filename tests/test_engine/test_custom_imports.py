"""An mmpretrain-style config switches each component on by custom_imports.

Runs in a fresh interpreter (marked slow) so that nothing but the config's
``custom_imports`` imports pcm_plugin.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO_ROOT

CONFIG = '''
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['pcm_plugin'], allow_failed_imports=False)
mixup = dict(type='PCMMixup', patch_dim=48, global_dim=32, num_patches=49,
             embed_dim=64, concept_bank={bank!r}, clip_head={head!r})
encoder = dict(type='VisualSemanticEncoder', embed_dim=64, num_layers=1,
               num_heads=2, ffn_dim=64)
decoder = dict(type='CaptionTransformerDecoder', vocab_size=11, embed_dim=64,
               num_layers=1, num_heads=2, ffn_dim=64)
loss = dict(type='CLIPWeightedCELoss', alpha=2.5)
param_scheduler = dict(type='NoamLR', model_dim=64, warmup=4, by_epoch=False)
val_evaluator = dict(type='COCOCaptionMetric', references={{1: ['a b']}},
                     scorers=('bleu', ))
'''

SCRIPT = '''
import json, sys, torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
assert 'pcm_plugin' not in sys.modules
cfg = Config.fromfile(sys.argv[1])
assert 'pcm_plugin' in sys.modules  # imported by custom_imports
DefaultScope.get_instance('t', scope_name=cfg.default_scope)
from mmpretrain.registry import METRICS, MODELS, PARAM_SCHEDULERS
mixup, encoder = MODELS.build(cfg.mixup).eval(), MODELS.build(cfg.encoder)
decoder, loss = MODELS.build(cfg.decoder), MODELS.build(cfg.loss)
opt = torch.optim.Adam(encoder.parameters())
sched = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler, optimizer=opt))
metric = METRICS.build(cfg.val_evaluator)
# The mix-up in front of a plain torch encoder, the loss on any logits.
tokens = mixup(torch.randn(2, 49, 48), torch.randn(2, 32))
plain = torch.nn.TransformerEncoder(
    torch.nn.TransformerEncoderLayer(64, 2, 64, batch_first=True), 1)
memory = plain(tokens['tokens'], src_key_padding_mask=~tokens['token_mask'])
logits = decoder(torch.zeros(2, 3, dtype=torch.long), memory,
                 tokens['token_mask'])
value = loss(torch.randn(2, 3, 7), torch.tensor([[1, 2, 0], [3, 0, -100]]),
             torch.tensor([0.3, 0.1]))
print(json.dumps(dict(
    types=[type(m).__name__ for m in (mixup, encoder, decoder, loss, sched,
                                      metric)],
    scope=cfg.default_scope, logits=list(logits.shape),
    loss=float(value))))
'''


@pytest.mark.slow
def test_components_build_from_mmpretrain_config(tmp_path, tiny_clip,
                                                  tiny_bank):
    config = tmp_path / 'my_captioner.py'
    config.write_text(CONFIG.format(bank=tiny_bank, head=tiny_clip[1]))
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    out = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(SCRIPT), str(config)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['types'] == [
        'PCMMixup', 'VisualSemanticEncoder', 'CaptionTransformerDecoder',
        'CLIPWeightedCELoss', 'NoamLR', 'COCOCaptionMetric'
    ]
    assert result['scope'] == 'mmpretrain'
    assert result['logits'] == [2, 3, 11]
    assert result['loss'] > 0
