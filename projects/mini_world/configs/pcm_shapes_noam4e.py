# The mini-world design before the benchmark fix
# (docs/benchmarks/mini_world.md), kept to study the seed collapse it showed:
# d=128, FFN 512, attention dropout 0.1, Noam (warm-up 300, factor 0.2) for 4
# epochs, which ends at 77 % of the peak learning rate.
_base_ = ['./pcm_shapes.py']

model = dict(
    mixup=dict(embed_dim=128),
    encoder=dict(embed_dim=128, ffn_dim=512, attn_drop=0.1),
    decoder=dict(embed_dim=128, ffn_dim=512, attn_drop=0.1))
param_scheduler = [
    dict(type='NoamLR', model_dim=128, warmup=300, factor=0.2,
         by_epoch=False)
]
train_cfg = dict(max_epochs=4, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4))
