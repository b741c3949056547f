# PCM-Net on the embedded mini world (`make demo`): a smaller model (d=128,
# 2 encoder + 2 decoder layers) on the mini CLIP's features (64x64 renders,
# 8x8 patches of width 64, 64-d embeddings). Trained on synthetic renders
# with salient-object defects, evaluated on real renders. The data paths are
# filled in from data/mini_world/world.json by tools/demo.py and
# tools/mini_world/ablation.py (pcm_plugin.mini_world.demo.world_config).
_base_ = ['./pcm_coco.py']

model = dict(
    tokenizer='data/mini_world/tokenizer/tokenizer.json',
    max_len=20,
    mixup=dict(
        patch_dim=64,
        global_dim=64,
        num_patches=64,
        embed_dim=128,
        concept_bank='data/mini_world/concepts/concepts.npz',
        clip_head='data/mini_world/clip/pcm-mini-clip.pt',
        top_k=5,
        top_m=5,
        dropout=0.3),
    encoder=dict(embed_dim=128, num_layers=2, num_heads=4, ffn_dim=512,
                 attn_drop=0.1, hidden_drop=0.1, ffn_drop=0.1),
    decoder=dict(embed_dim=128, num_layers=2, num_heads=4, ffn_dim=512,
                 attn_drop=0.1, hidden_drop=0.1, predictor_drop=0.3),
    loss=dict(alpha=2.5))

train_dataloader = dict(batch_size=64, num_workers=0,
                        persistent_workers=False)
val_dataloader = dict(batch_size=100, num_workers=0)
test_dataloader = dict(batch_size=100, num_workers=0)
val_evaluator = dict(scorers=('bleu', 'rouge', 'cider'))  # no JVM per epoch

# The official Noam shape at a toy scale: warm-up 300 iterations,
# peak lr 1e-3.
param_scheduler = [
    dict(type='NoamLR', model_dim=128, warmup=300, factor=0.2,
         by_epoch=False)
]
train_cfg = dict(max_epochs=4, val_interval=4)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=4, save_best=None, max_keep_ckpts=1))
randomness = dict(seed=0)
